"""How every registered derivative provider does on one model and data: its ``dF/dt`` error against
a float64 JVP, its training-step cost relative to flow matching, and the memory a step holds.

``genflow derivatives --config X`` (``genflow.commands.derivatives``) prints these; the benchmarks
(``benchmarks/derivative_accuracy.py``) use the same error measure.

- Error: on rows with ``t > r`` (``t, r`` from ``genflow.objectives.ordered_times`` with TiM's
  defaults, scaled to ``t_max``; ``x_t`` and ``dx_t/dt = v_t`` from the run's path), the relative L2
  norm ``|dF - dF_ref| / |dF_ref|`` of the provider's ``dF/dt`` (passes in the model's precision, the
  main pass handed over to providers that reuse it) against ``torch.func.jvp`` of a float64 copy of
  the model in eval mode.
- Cost: one training step (``objective.loss`` + backward + AdamW step) of the run's objective with
  each provider, over the same step of the ``fm`` objective; on CPUs the median of per-round CPU-time
  ratios of interleaved rounds, on GPUs the ratio of median times.
- Memory: the bytes of the tensors a step saves for backward (every device) and, on GPUs, the peak
  allocated memory of the step.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs
import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from genflow.commands import timing
from genflow.errors import GenflowError
from genflow.interfaces import Backbone, Batch, Condition, DataSpec, Derivative, Objective, ProbabilityPath, bind
from genflow.objectives import ordered_times
from genflow.plugins import PluginManager

#: TiM's default time distribution (``p_mean``, ``p_std``): where the error is measured.
TIMES = (-0.4, 1.0)


@attrs.frozen(kw_only=True)
class Candidate:
    """One provider to compare: shown as ``label``, built as ``name`` with config ``overrides``."""

    label: str
    name: str
    overrides: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Rows:
    """Float64 inputs of the error measure, on the ``t > r`` rows: ``(M, ...)`` states, ``(M,)`` times."""

    x_t: Tensor
    v_t: Tensor
    t: Tensor
    r: Tensor
    cond: Condition


def candidates(manager: PluginManager, configured: tuple[str, Any] | None = None) -> list[Candidate]:
    """Every registered provider with default settings, plus the run's own selection (``name``,
    ``options``) when its options are not the defaults."""
    out = [Candidate(label=name, name=name) for name in manager.names("derivative")]
    if configured is not None:
        name, options = configured
        default = manager.get("derivative", name).config()
        if options != default and attrs.has(type(options)):
            changed = {k: v for k, v in attrs.asdict(options, recurse=False).items()
                       if getattr(default, k) != v}
            label = f"{name} (" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")"
            out.append(Candidate(label=label, name=name, overrides=changed))
    return out


def build_candidate(manager: PluginManager, candidate: Candidate) -> Derivative:
    component = manager.get("derivative", candidate.name)
    config = component.config()
    derivative = component.build(attrs.evolve(config, **candidate.overrides) if candidate.overrides else config)
    if not isinstance(derivative, Derivative):
        raise GenflowError(f"derivative '{candidate.name}' built a {type(derivative).__name__}, not a Derivative")
    return derivative


def interval_inputs(path: ProbabilityPath, batch: Batch, *, seed: int = 0) -> Rows:
    """``x_t, v_t, t, r`` in float64 for every row of ``batch``, ``t > r`` (TiM's time distribution)."""
    generator = torch.Generator(batch.x.device).manual_seed(seed)
    x = batch.x.double()
    t, r = ordered_times(x.shape[0], *TIMES, generator=generator, dtype=torch.float64)
    t, r = t * path.t_max, r * path.t_max
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float64)
    keep = (t > r).nonzero().squeeze(1)
    x, z, t, r = x[keep], z[keep], t[keep], r[keep]
    return Rows(x_t=path.interpolate(x, z, t), v_t=path.velocity(x, z, t), t=t, r=r, cond=batch.cond.index(keep))


def redraw_zero_weights(model: torch.nn.Module, seed: int = 0) -> int:
    """Redraw every all-zero weight matrix / kernel (adaLN-zero, zero output layers) Xavier-uniformly,
    so an untrained model is a generic smooth function instead of ``F = 0``; returns how many."""
    generator = torch.Generator().manual_seed(seed)
    redrawn = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                fan_in, fan_out = p[0].numel(), p.shape[0] * p[0][0].numel()
                bound = (6 / (fan_in + fan_out)) ** 0.5
                p.copy_(((torch.rand(p.shape, generator=generator) * 2 - 1) * bound).to(p.device, p.dtype))
                redrawn += 1
    return redrawn


def jvp_reference(model: Backbone, rows: Rows) -> Tensor:
    """``dF/dt`` by ``torch.func.jvp`` through ``model`` (math attention), in the inputs' dtype."""
    fn = bind(model, rows.r, rows.cond)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        dF_dt = torch.func.jvp(fn, (rows.x_t, rows.t), (rows.v_t, torch.ones_like(rows.t)))[1]
    return dF_dt.detach()


def provider_estimate(provider: Derivative, model: Backbone, rows: Rows, *, t_max: float,
                      dtype: torch.dtype) -> Tensor:
    """The provider's ``dF/dt`` with inputs in ``dtype`` (as float64); the main pass is handed over as
    ``F_t`` to providers that reuse it, as ``Derivative.forward_and_derivative`` does."""
    x_t, v_t, t, r = (v.to(dtype) for v in (rows.x_t, rows.v_t, rows.t, rows.r))
    fn = bind(model, r, rows.cond)
    with torch.no_grad():
        reuse = {"F_t": fn(x_t, t)} if provider.uses_output else {}
        return provider.time_derivative(fn, x_t, t, v_t, t_min=r, t_max=t_max, **reuse).double()


def relative_error(estimate: Tensor, reference: Tensor) -> float:
    """``|estimate - reference| / |reference|`` (L2 norms over every entry)."""
    return float((estimate.double() - reference.double()).norm() / reference.double().norm())


@contextlib.contextmanager
def saved_bytes() -> Iterator[dict[str, int]]:
    """Count the bytes of the tensors autograd saves for backward inside the block (each storage once)."""
    seen: set[tuple[int, int]] = set()
    total = {"bytes": 0}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen and tensor.device.type != "meta":
            seen.add(key)
            total["bytes"] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield total


@attrs.frozen(kw_only=True)
class Setup:
    """The run's pieces the report needs: its model (float32 or as configured), data batch, path, data
    spec, objective factory (``objective(derivative)``), device and precision."""

    model: Backbone
    batch: Batch
    path: ProbabilityPath
    spec: DataSpec
    objective: Callable[[Derivative], Objective]
    baseline: Objective | None
    device: torch.device
    bf16: bool = False


def _autocast(setup: Setup) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(setup.device.type, dtype=torch.bfloat16) if setup.bf16 else contextlib.nullcontext()


def stepper(setup: Setup, objective: Objective) -> tuple[Callable[[], None], Backbone]:
    """One training step of ``objective`` on a copy of the model: loss, backward, AdamW."""
    model = copy.deepcopy(setup.model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator(setup.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(setup):
            out = objective.loss(model, setup.batch, generator=generator.manual_seed(0))
        out.loss.backward()
        optimizer.step()

    return step, model


def step_memory(setup: Setup, objective: Objective) -> dict[str, float]:
    """MiB saved for backward by one step (and the step's peak allocated MiB on CUDA)."""
    step, _ = stepper(setup, objective)
    step()  # optimizer state exists before the measured step
    with timing.peak_memory(setup.device) as peak, saved_bytes() as saved:
        step()
    out = {"saved_mib": saved["bytes"] / 2**20}
    if "peak_allocated_gib" in peak:
        out["peak_mib"] = peak["peak_allocated_gib"] * 1024
    return out


def step_costs(setup: Setup, objectives: Mapping[str, Objective], *, warmup: int, repeats: int) -> dict[str, float]:
    """Seconds per training step of each objective (median), and ``ratio_fm`` against ``"fm"``."""
    steps = {label: stepper(setup, objective)[0] for label, objective in objectives.items()}
    out: dict[str, float] = {}
    if setup.device.type == "cpu":
        times = timing.interleaved(steps, warmup=warmup, rounds=repeats)
        for label in steps:
            out[f"{label}:step_s"] = statistics.median(times[label]["cpu"])
            if "fm" in steps:
                pairs = zip(times[label]["cpu"], times["fm"]["cpu"], strict=True)
                out[f"{label}:ratio_fm"] = statistics.median(a / b for a, b in pairs)
        return out
    for label, step in steps.items():
        out[f"{label}:step_s"] = statistics.median(timing.time_calls(step, device=setup.device, warmup=warmup,
                                                                     repeats=repeats))
    if "fm" in steps:
        for label in steps:
            out[f"{label}:ratio_fm"] = out[f"{label}:step_s"] / out["fm:step_s"]
    return out


def report(setup: Setup, manager: PluginManager, chosen: list[Candidate], *, warmup: int = 1,
           repeats: int = 5) -> list[dict[str, Any]]:
    """One row per candidate: order, error against the float64 JVP, step cost and memory (or ``error``)."""
    rows = interval_inputs(setup.path, setup.batch)
    reference: Tensor | None = None
    reference_note = ""
    model = copy.deepcopy(setup.model).eval()
    if setup.model.supports_jvp:
        reference = jvp_reference(copy.deepcopy(model).double(), rows)
        if not reference.any() and redraw_zero_weights(model):  # an untrained model with F = 0: dF/dt = 0
            reference = jvp_reference(copy.deepcopy(model).double(), rows)
            reference_note = "error measured with the zero-initialised weights of the untrained model redrawn"
    else:
        reference_note = f"no float64 JVP reference: {type(setup.model).__name__} has no forward-mode AD"
    dtype = next(model.parameters()).dtype
    table: list[dict[str, Any]] = []
    objectives: dict[str, Objective] = {} if setup.baseline is None else {"fm": setup.baseline}
    for candidate in chosen:
        row: dict[str, Any] = {"provider": candidate.label}
        try:
            provider = build_candidate(manager, candidate)
            provider.check_backbone(setup.model, distributed=False)
            row.update(order=provider.order, uses_output=provider.uses_output, forward_only=provider.forward_only)
            if reference is not None:
                with _autocast(setup):
                    estimate = provider_estimate(provider, model, rows, t_max=setup.path.t_max, dtype=dtype)
                row["rel_err_dF"] = relative_error(estimate, reference)
            objective = setup.objective(provider)
            row.update(step_memory(setup, objective))
            objectives[candidate.label] = objective
        except GenflowError as exc:
            row["error"] = str(exc)
        table.append(row)
    costs = step_costs(setup, objectives, warmup=warmup, repeats=repeats)
    for row in table:
        for key in ("step_s", "ratio_fm"):
            if f"{row['provider']}:{key}" in costs:
                row[key] = costs[f"{row['provider']}:{key}"]
        if reference_note and "error" not in row:
            row["note"] = reference_note
    if "fm:step_s" in costs:
        fm_row = {"provider": "fm (baseline, no dF/dt)", "step_s": costs["fm:step_s"], "ratio_fm": 1.0}
        fm_row.update(step_memory(setup, objectives["fm"]))
        table.append(fm_row)
    return table
