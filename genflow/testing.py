"""Contract checks for every kind of component, public so plugin authors can run them too.

Each ``check_*`` builds a component from its registration with default settings on tiny data and
asserts the interface contract; genflow's own ``tests/contract`` runs them over every registered
component, and a plugin's test suite can do the same::

    from genflow.plugins import PluginManager
    from genflow.testing import check_objective

    def test_my_objective():
        check_objective(PluginManager(), "myobjective")
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from genflow.components.build import cache_dir as genflow_cache_dir
from genflow.errors import ConfigError, GenflowError
from genflow.interfaces import (
    Backbone,
    Batch,
    BatchLoader,
    Condition,
    Dataset,
    DataSpec,
    Derivative,
    Objective,
    ObjectiveOutput,
    ProbabilityPath,
    Sampler,
    TextEncoder,
)
from genflow.plugins import PluginManager

#: Data shapes a contract check tries, in order, until the backbone accepts one.
SPECS = (DataSpec(shape=(2,), num_classes=3), DataSpec(shape=(3, 8, 8), num_classes=3))


def _component(manager: PluginManager, kind: str, name: str):  # noqa: ANN202
    component = manager.get(kind, name)
    return component, component.config()


def build_backbone_for_tests(manager: PluginManager, name: str, spec: DataSpec | None = None) -> tuple[Backbone,
                                                                                                     DataSpec]:
    """The backbone ``name`` with default settings on the first spec of ``SPECS`` it accepts."""
    component, config = _component(manager, "backbone", name)
    for candidate in [spec] if spec is not None else SPECS:
        try:
            with torch.device("meta"):
                backbone = component.build(config, spec=candidate)
        except ConfigError:
            continue
        backbone.to_empty(device="cpu")
        torch.manual_seed(0)
        backbone.init_weights()
        return backbone, candidate
    raise AssertionError(f"backbone '{name}' accepts none of the test data shapes {[s.shape for s in SPECS]}")


def _batch(spec: DataSpec, n: int = 4, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *spec.shape), generator=generator)
    labels = torch.randint(spec.num_classes, (n,), generator=generator) if spec.num_classes else None
    return Batch(x=x, cond=Condition(labels=labels))


def check_path(manager: PluginManager, name: str) -> None:
    """``x_0 = x``, ``x_{t_max} = z``, ``v_t = d x_t / dt``, and the transition at ``r = t`` is the identity."""
    component, config = _component(manager, "path", name)
    path = component.build(config)
    assert isinstance(path, ProbabilityPath)
    x, z = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    zeros, ends = torch.zeros(5, dtype=torch.float64), torch.full((5,), path.t_max, dtype=torch.float64)
    torch.testing.assert_close(path.interpolate(x, z, zeros), x)
    torch.testing.assert_close(path.interpolate(x, z, ends), z, atol=1e-12, rtol=0)
    t, h = torch.rand(5, dtype=torch.float64) * 0.8 * path.t_max + 0.1, 1e-6
    numeric = (path.interpolate(x, z, t + h) - path.interpolate(x, z, t - h)) / (2 * h)
    torch.testing.assert_close(path.velocity(x, z, t), numeric, atol=1e-7, rtol=1e-7)
    F = torch.randn_like(x)
    torch.testing.assert_close(path.transition(x, F, t, t), x)


def check_backbone(manager: PluginManager, name: str) -> None:
    """Output shaped like ``x_t``, finite, deterministic, and class-conditional with a null class."""
    backbone, spec = build_backbone_for_tests(manager, name)
    assert isinstance(backbone, Backbone)
    batch = _batch(spec)
    t = torch.tensor([0.9, 0.5, 0.3, 1.0])
    r = torch.tensor([0.1, 0.5, 0.0, 0.2])
    out = backbone(batch.x, t, r, batch.cond)
    assert out.shape == batch.x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(backbone(batch.x, t, r, batch.cond), out)
    null = Condition(labels=torch.full((4,), spec.num_classes))
    assert torch.isfinite(backbone(batch.x, t, r, null)).all()
    assert all(isinstance(m, torch.nn.Module) for m in backbone.fsdp_units())


#: Largest relative L2 error of ``dF/dt`` that ``check_derivative`` accepts, by accuracy order, on its
#: analytic test function (``F = sin(x) t^2``, float64, ``t`` in ``[0.3, 0.7]``, standard-normal
#: tangents). There the built-in ``dde`` with its default step 0.005 errs by 5e-5 with the central
#: stencil (order 2) and 7e-3 with the one-sided one (order 1); ``jvp`` is exact. A first-order
#: provider that claims order 2 fails, and so does a wrong one.
DERIVATIVE_TOLERANCE: dict[int, float] = {1: 3e-2, 2: 1e-3}


def _analytic(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # F = sin(x) t^2
    return torch.sin(x) * t[:, None] ** 2


def _analytic_dF_dt(x: torch.Tensor, t: torch.Tensor, dx_dt: torch.Tensor) -> torch.Tensor:
    return torch.cos(x) * dx_dt * t[:, None] ** 2 + torch.sin(x) * 2 * t[:, None]


def _relative_error(got: torch.Tensor, exact: torch.Tensor) -> float:
    return float((got - exact).norm() / exact.norm())


def build_derivative(manager: PluginManager, name: str, overrides: Mapping[str, Any] | None = None) -> Derivative:
    """The derivative provider ``name`` with default settings, changed by ``overrides`` (config fields)."""
    component, config = _component(manager, "derivative", name)
    derivative = component.build(attrs.evolve(config, **overrides) if overrides else config)
    assert isinstance(derivative, Derivative), f"derivative '{name}' built a {type(derivative).__name__}"
    return derivative


def check_derivative(manager: PluginManager, name: str, order: int | None = None,
                     overrides: Mapping[str, Any] | None = None) -> None:
    """The provider's ``dF/dt`` is accurate to its order and it follows the derivative protocol.

    ``order`` (1 or 2; default: the provider's own ``order``) selects the tolerance
    ``DERIVATIVE_TOLERANCE[order]`` on the relative L2 error against the analytic ``dF/dt``;
    ``overrides`` changes config fields (e.g. ``{"stencil": "one-sided"}``). Also asserted: the
    result is detached and shaped like ``x_t``; ``fn`` is never evaluated outside ``[t_min, t_max]``,
    also at rows on those bounds; the global RNG does not advance; and through
    ``Derivative.forward_and_derivative`` on a network with a random layer (a scale drawn from the
    global RNG on every call), the provider's passes see the draw of the main pass, whether the
    provider runs before it or reuses it (``uses_output``).
    """
    derivative = build_derivative(manager, name, overrides)
    order = derivative.order if order is None else order
    assert order in DERIVATIVE_TOLERANCE, f"order must be one of {sorted(DERIVATIVE_TOLERANCE)}, got {order}"
    tolerance = DERIVATIVE_TOLERANCE[order]
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    dx_dt = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    t = torch.linspace(0.3, 0.7, 6, dtype=torch.float64)
    exact = _analytic_dF_dt(x_t, t, dx_dt)

    before = torch.get_rng_state()
    reuse = {"F_t": _analytic(x_t, t)} if derivative.uses_output else {}
    got = derivative.time_derivative(_analytic, x_t, t, dx_dt, t_min=torch.zeros_like(t), t_max=1.0, **reuse)
    assert got.shape == x_t.shape and not got.requires_grad
    assert torch.equal(torch.get_rng_state(), before), f"derivative '{name}' advanced the global RNG"
    error = _relative_error(got, exact)
    assert error <= tolerance, f"derivative '{name}': relative error {error:.2e} > {tolerance:g} (order {order})"

    _check_bounds(derivative, name, x_t, dx_dt)
    _check_random_layer(derivative, name, x_t, t, dx_dt, tolerance)


def _check_bounds(derivative: Derivative, name: str, x_t: torch.Tensor, dx_dt: torch.Tensor) -> None:
    """Rows with ``t`` on or next to ``t_min`` or ``t_max``: ``fn`` is only evaluated inside the interval."""
    t_rows = torch.tensor([0.2, 0.2001, 0.9999, 1.0, 0.5, 0.5], dtype=torch.float64)
    t_min = torch.tensor([0.2, 0.2, 0.1, 0.0, 0.4999, 0.0], dtype=torch.float64)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = t
        seen.append((s.detach().clone(), t_min.repeat(s.shape[0] // t_min.shape[0])))
        return _analytic(x, s)

    reuse = {"F_t": _analytic(x_t, t_rows)} if derivative.uses_output else {}
    got = derivative.time_derivative(fn, x_t, t_rows, dx_dt, t_min=t_min, t_max=1.0, **reuse)
    assert torch.isfinite(got).all(), f"derivative '{name}' is not finite next to the interval's bounds"
    for s, low in seen:
        assert ((s >= low - 1e-12) & (s <= 1.0 + 1e-12)).all(), (
            f"derivative '{name}' evaluated fn at t = {s.tolist()}, outside [t_min, t_max] = [{low.tolist()}, 1]")


class _RandomScale(torch.nn.Module):
    """``F = (1 + u) sin(x) t^2 + r``, ``u`` drawn from the global RNG on every call (a random layer)."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, cond: Condition) -> torch.Tensor:
        u = torch.rand((), dtype=x.dtype)
        return (1 + u) * _analytic(x, t) + r[:, None]


def _check_random_layer(derivative: Derivative, name: str, x_t: torch.Tensor, t: torch.Tensor,
                        dx_dt: torch.Tensor, tolerance: float) -> None:
    """The derivative protocol replays the main pass's random state for the provider's passes."""
    r = torch.cat([t[:4] - 0.2, t[4:]])  # the last two rows have r = t: no derivative there
    network = _RandomScale()
    torch.manual_seed(1234)
    expected_u = torch.rand((), dtype=x_t.dtype)
    expected_state = torch.get_rng_state()
    torch.manual_seed(1234)
    out = derivative.forward_and_derivative(network, x_t, t, r, dx_dt, Condition(), t_max=1.0)
    assert torch.equal(torch.get_rng_state(), expected_state), (
        f"derivative '{name}': the protocol advanced the global RNG by more than the main pass")
    torch.testing.assert_close(out.F, (1 + expected_u) * _analytic(x_t, t) + r[:, None])
    exact = (1 + expected_u) * _analytic_dF_dt(x_t, t, dx_dt)
    assert torch.equal(out.dF_dt[4:], torch.zeros_like(out.dF_dt[4:])), "dF/dt must be 0 on r = t rows"
    error = _relative_error(out.dF_dt[:4], exact[:4])
    assert error <= tolerance, (
        f"derivative '{name}': with a random layer, relative error {error:.2e} > {tolerance:g}: its passes "
        "do not see the random state of the main pass (see genflow.rng)")


def _objective_context(manager: PluginManager, spec: DataSpec) -> dict[str, object]:
    """Build context of an objective: the core's linear path, the first registered derivative
    provider (None when no plugin registers one) and ``spec``."""
    path_c, path_cfg = _component(manager, "path", "linear")
    derivative = None
    if manager.names("derivative"):
        deriv_c, deriv_cfg = _component(manager, "derivative", manager.names("derivative")[0])
        derivative = deriv_c.build(deriv_cfg)
    return {"path": path_c.build(path_cfg), "derivative": derivative, "spec": spec}


def check_objective(manager: PluginManager, name: str, backbone: str = "mlp") -> None:
    """A finite scalar loss whose gradient reaches the backbone; deterministic given the generator."""
    component, config = _component(manager, "objective", name)
    model, spec = build_backbone_for_tests(manager, backbone)
    objective = component.build(config, **_objective_context(manager, spec))
    assert isinstance(objective, Objective)
    batch = _batch(spec, n=8)
    out = objective.loss(model, batch, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, ObjectiveOutput)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.per_sample.shape == (8,)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    again = objective.loss(model, batch, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.loss, out.loss)


def check_sampler(manager: PluginManager, name: str, backbone: str = "mlp") -> None:
    """Samples shaped like the noise, finite, deterministic, for 1 and 3 steps, with guidance."""
    component, config = _component(manager, "sampler", name)
    model, spec = build_backbone_for_tests(manager, backbone)
    path_c, path_cfg = _component(manager, "path", "linear")
    sampler = component.build(config, path=path_c.build(path_cfg), spec=spec)
    assert isinstance(sampler, Sampler)
    batch = _batch(spec)
    for steps in (1, 3):
        for guidance in (1.0, 2.0):
            a = sampler.sample(model, batch.x, batch.cond, steps=steps, guidance=guidance)
            b = sampler.sample(model, batch.x, batch.cond, steps=steps, guidance=guidance)
            assert a.shape == batch.x.shape and torch.isfinite(a).all()
            torch.testing.assert_close(a, b)


def check_dataset(manager: PluginManager, name: str, cache_dir: pathlib.Path | None = None,
                  shared_cache: bool = True) -> None:
    """Batches of the declared shape; a loader resumed from ``state_dict`` continues exactly.

    Datasets prepared on first use go to ``cache_dir``, else genflow's cache (``GENFLOW_CACHE``)
    when ``shared_cache``, else a temporary folder."""
    component, config = _component(manager, "dataset", name)
    if hasattr(config, "url"):  # a store reader needs a store: covered by the data tests
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset = component.build(config, cache_dir=cache_dir or (genflow_cache_dir() if shared_cache else pathlib.Path(tmp)))
        assert isinstance(dataset, Dataset)
        loader = dataset.loader(batch_size=4, rank=0, world_size=1, seed=3)
        assert isinstance(loader, BatchLoader)
        it = iter(loader)
        first = next(it)
        assert first.x.shape == (4, *dataset.spec.shape)
        state = loader.state_dict()
        expected = next(it)
        resumed = dataset.loader(batch_size=4, rank=0, world_size=1, seed=3)
        resumed.load_state_dict(state)
        torch.testing.assert_close(next(iter(resumed)).x, expected.x)
        assert dataset.reference(8, seed=0).x.shape == (8, *dataset.spec.shape)


def check_text_encoder(manager: PluginManager, name: str) -> None:
    """States ``(N, L, dim)``, finite and deterministic; padding does not change the states of real
    tokens; an empty caption (all-False mask) stays finite. ``tokenize`` is checked on odd captions
    when the default config can tokenize (the built-in ``transformer`` needs a tokenizer file). A
    pretrained encoder with ``external_weights`` whose library or weights are not available here
    (one ``GenflowError`` at its first forward) is checked up to its build."""
    component, config = _component(manager, "text_encoder", name)
    spec = DataSpec(shape=(3, 8, 8), text=True)
    with torch.device("meta"):
        encoder = component.build(config, spec=spec)
    assert isinstance(encoder, TextEncoder) and encoder.dim > 0
    encoder.to_empty(device="cpu")
    torch.manual_seed(0)
    encoder.init_weights()
    encoder.eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [0, 0, 0, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        try:
            states = encoder(ids, mask)
        except GenflowError:
            if encoder.external_weights:
                return
            raise
        assert states.shape == (3, 5, encoder.dim) and torch.isfinite(states).all()
        torch.testing.assert_close(encoder(ids, mask), states)
        shorter = encoder(ids[:, :3], mask[:, :3])  # less padding: the real tokens' states are the same
        torch.testing.assert_close(shorter[mask[:, :3]], states[mask])
    try:
        tok_ids, tok_mask = encoder.tokenize(["a red circle", "", "zebra \u00e9\u00e8 \u4e09\u4e2a"])
    except GenflowError:
        return
    assert tok_ids.shape == tok_mask.shape and tok_ids.shape[0] == 3 and not tok_mask[1].any()


CHECKS = {
    "text_encoder": check_text_encoder,
    "path": check_path,
    "backbone": check_backbone,
    "derivative": check_derivative,
    "objective": check_objective,
    "sampler": check_sampler,
    "dataset": check_dataset,
}
