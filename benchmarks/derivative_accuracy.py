"""DDE accuracy against a float64 JVP reference, by epsilon, pass precision and stencil; and the
effect of the one-sided stencil on sample quality.

    python benchmarks/derivative_accuracy.py --preset unet --train-steps 300      # CPU table
    python benchmarks/derivative_accuracy.py --quality                            # + toy2d quality

Accuracy: on the ``t != r`` rows of a TiM batch (times drawn by the ``tim`` objective), ``dF/dt``
from ``dde`` (central and one-sided stencils, several ``epsilon``) with its passes in float64,
fp32 or bf16 autocast, against ``torch.func.jvp`` of a float64 copy of the model (math attention).
Errors are relative L2 norms over the batch, of ``dF/dt`` and of the regression target
``F_hat = v_t - (t - r) dF/dt`` that training actually sees. Two models: *untrained* (the
initialisation with every zero-initialised weight redrawn, so that ``F`` is not identically 0) and
*trained* (``--train-steps`` steps of TiM + DDE training on the ``shapes`` dataset, or on random
data with ``--data random``).

Quality (``--quality``): TiM on ``toy2d`` (8 Gaussians, MLP) trained with the central DDE, the
one-sided DDE and JVP, several seeds; sliced Wasserstein distance to the data at 1, 2, 4, 8 steps.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Any

import common
import torch
from genflow_tim.derivatives import DDE, JVP, DdeConfig
from genflow_tim.objective import TimObjective
from torch import Tensor

from genflow.commands.derivative_report import redraw_zero_weights
from genflow.commands.derivative_report import relative_error as relative
from genflow.eval.distances import sliced_wasserstein
from genflow.interfaces import Backbone, Batch, Condition, ProbabilityPath, bind
from genflow.objectives import transition_target
from genflow.plugins import PluginManager
from genflow.sampling.driver import generate

PRECISIONS = ("fp64", "fp32", "bf16")
STENCILS = ("central", "one-sided")
EPSILONS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def data_table(kind: str, preset: str) -> dict[str, Any] | None:
    """The dataset a model trains on: 32x32 ``shapes`` (3 channels) or the preset's random data."""
    if kind == "shapes":
        return {"name": "shapes", "resolution": 32, "count": 4096}
    return None


def make_trainer(manager: PluginManager, preset: str, data: str, device: str, batch: int = 64,
                 lr: float = 1e-3) -> common.BenchTrainer:
    """A TiM + DDE trainer (demo optimiser settings) for ``preset`` on ``data``."""
    config = common.run_config(manager, preset=preset, mode="dde", batch=batch, device=device,
                               data=data_table(data, preset),
                               train={"lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                                      "warmup_steps": 50, "ema_decay": [0.999]})
    return common.BenchTrainer(config, manager)


def train(trainer: common.BenchTrainer, steps: int, seed: int = 0) -> float:
    """Run ``steps`` real training steps on the trainer's dataset; returns the last loss."""
    loader = trainer.components.dataset.loader(batch_size=trainer.train.batch_size, rank=0, world_size=1,
                                               seed=seed)
    generator, loss = torch.Generator(trainer.world.device), float("nan")
    for _, batch in zip(range(steps), loader, strict=False):
        batch = Batch(x=batch.x.to(trainer.world.device), cond=batch.cond.to(trainer.world.device))
        loss = float(trainer.train_step(batch, generator)["loss"])
        trainer.step += 1
    return loss


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """bf16: autocast (what a bf16 training step runs under); fp32 / fp64: autocast off."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        yield


def tim_rows(objective: TimObjective, batch: Batch, seed: int) -> tuple[Tensor, ...]:
    """``(x_t, v_t, t, r, labels)`` in float64 on the ``t != r`` rows of a TiM-sampled batch."""
    generator = torch.Generator(batch.x.device).manual_seed(seed)
    x = batch.x.double()
    t, r = objective.times(x.shape[0], generator=generator, dtype=torch.float64)
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float64)
    rows = (t != r).nonzero().squeeze(1)
    path = objective.path
    x_t, v_t = path.interpolate(x[rows], z[rows], t[rows]), path.velocity(x[rows], z[rows], t[rows])
    labels = batch.cond.labels[rows] if batch.cond.labels is not None else None
    return x_t, v_t, t[rows], r[rows], labels


def estimate(model: Backbone, stencil: str, epsilon: float, precision: str, inputs: Sequence[Tensor],
             t_max: float) -> Tensor:
    """``dF/dt`` from ``dde`` with its passes in ``precision`` (one-sided: the main pass reused)."""
    x_t, v_t, t, r, labels = inputs
    dtype = torch.float64 if precision == "fp64" else torch.float32
    x_t, v_t, t, r = (v.to(dtype) for v in (x_t, v_t, t, r))
    fn = bind(model, r, Condition(labels=labels))
    provider = DDE(DdeConfig(epsilon=epsilon, precision="model", stencil=stencil))
    with precision_context(precision, x_t.device), torch.no_grad():
        F_t = fn(x_t, t) if stencil == "one-sided" else None
        reuse = {} if F_t is None else {"F_t": F_t}
        return provider.time_derivative(fn, x_t, t, v_t, t_min=r, t_max=t_max, **reuse).double()


def jvp_estimate(model: Backbone, precision: str, inputs: Sequence[Tensor]) -> Tensor:
    """``dF/dt`` from ``jvp`` in ``precision``."""
    x_t, v_t, t, r, labels = inputs
    dtype = torch.float64 if precision == "fp64" else torch.float32
    x_t, v_t, t, r = (v.to(dtype) for v in (x_t, v_t, t, r))
    with precision_context(precision, x_t.device):
        return JVP().time_derivative(bind(model, r, Condition(labels=labels)), x_t, t, v_t, t_min=r).double()


def accuracy_rows(model: Backbone, objective: TimObjective, batch: Batch, *, label: str,
                  epsilons: Sequence[float], precisions: Sequence[str], seed: int = 0) -> list[dict[str, Any]]:
    """Relative errors of ``dF/dt`` and of the target for every stencil x epsilon x precision (+ jvp)."""
    model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # forward AD needs it (group norm)
    model.eval()
    model64 = copy.deepcopy(model).double()
    inputs = tim_rows(objective, batch, seed)
    x_t, v_t, t, r, _ = inputs
    path: ProbabilityPath = objective.path
    exact = jvp_estimate(model64, "fp64", inputs)
    target = transition_target(path, x_t, v_t, exact, t, r)
    rows = []

    def add(stencil: str, epsilon: float | None, precision: str, dF: Tensor) -> None:
        rows.append({"model": label, "precision": precision, "stencil": stencil, "epsilon": epsilon,
                     "rel_err_dF": relative(dF, exact),
                     "rel_err_target": relative(transition_target(path, x_t, v_t, dF, t, r), target),
                     "rows": int(x_t.shape[0])})

    for precision in precisions:
        net = model64 if precision == "fp64" else model
        for stencil in STENCILS:
            for epsilon in epsilons:
                add(stencil, epsilon, precision, estimate(net, stencil, epsilon, precision, inputs, path.t_max))
        if precision != "fp64":
            with contextlib.suppress(Exception):  # forward AD through some bf16 kernels may be missing
                add("jvp", None, precision, jvp_estimate(net, precision, inputs))
    return rows


def pivot(rows: Sequence[dict[str, Any]], key: str, epsilons: Sequence[float]) -> list[dict[str, Any]]:
    """One line per (model, precision, stencil), one column per epsilon."""
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        line = lines.setdefault((r["model"], r["precision"], r["stencil"]),
                                {"model": r["model"], "precision": r["precision"], "stencil": r["stencil"]})
        line["jvp" if r["epsilon"] is None else f"e={r['epsilon']:g}"] = r[key]
    return list(lines.values())


def accuracy(manager: PluginManager, args: argparse.Namespace) -> dict[str, Any]:
    """Untrained and trained models of ``--preset``: every row of the accuracy table."""
    device = torch.device(args.device)
    trainer = make_trainer(manager, args.preset, args.data, args.device)
    batch = trainer.components.dataset.reference(args.batch, seed=123)
    batch = Batch(x=batch.x.to(device), cond=batch.cond.to(device))
    objective = trainer.components.objective
    assert isinstance(objective, TimObjective)
    untrained = copy.deepcopy(trainer.model)
    redraw_zero_weights(untrained)
    rows = accuracy_rows(untrained, objective, batch, label="untrained", epsilons=args.epsilons,
                         precisions=args.precisions)
    info: dict[str, Any] = {}
    if args.train_steps:
        start = time.perf_counter()
        info["final_loss"] = train(trainer, args.train_steps)
        info["train_seconds"] = time.perf_counter() - start
        rows += accuracy_rows(trainer.model, objective, batch, label=f"trained ({args.train_steps} steps)",
                              epsilons=args.epsilons, precisions=args.precisions)
    return {"rows": rows, "training": info}


# --------------------------------------------------------------------------------------------
# Quality: one-sided vs central DDE (and JVP) on toy2d
# --------------------------------------------------------------------------------------------

QUALITY_DERIVATIVES: dict[str, dict[str, Any]] = {
    "dde (central)": {"name": "dde"},
    "dde (one-sided)": {"name": "dde", "stencil": "one-sided"},
    "dde (one-sided, e=0.001)": {"name": "dde", "stencil": "one-sided", "epsilon": 0.001},
    "jvp": {"name": "jvp"},
}


def toy_trainer(manager: PluginManager, derivative: dict[str, Any], *, steps: int, seed: int) -> common.BenchTrainer:
    """TiM on 8 Gaussians with a 3 x 128 MLP, batch 256, AdamW 1e-3, EMA 0.999."""
    from genflow.config import resolve

    raw = {"data": {"name": "toy2d", "kind": "gaussians8"}, "objective": {"name": "tim"},
           "derivative": dict(derivative), "backbone": {"name": "mlp", "hidden": 128, "depth": 3},
           "train": {"steps": steps, "batch_size": 256, "lr": 1e-3, "device": "cpu", "seed": seed,
                     "ema_decay": [0.999]}}
    return common.BenchTrainer(resolve(raw, manager), manager)


def toy_quality(trainer: common.BenchTrainer, steps: Sequence[int], num: int = 4000) -> dict[int, float]:
    """Sliced Wasserstein distance of EMA samples to fresh data at each step count."""
    dataset = trainer.components.dataset
    reference = dataset.reference(num, seed=99).x
    with trainer.ema.applied():
        samples = generate(trainer.model, trainer.components.sampler, trainer.components.spec, steps=steps,
                           num=num, seed=7, device=trainer.world.device)
    return {n: sliced_wasserstein(x, reference) for n, x in samples.items()}


def quality(manager: PluginManager, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per derivative: sliced Wasserstein (median over seeds) at 1, 2, 4, 8 steps."""
    steps, rows = (1, 2, 4, 8), []
    for name, derivative in QUALITY_DERIVATIVES.items():
        per_seed: list[dict[int, float]] = []
        start = time.process_time()
        for seed in range(args.quality_seeds):
            trainer = toy_trainer(manager, derivative, steps=args.quality_steps, seed=seed)
            train(trainer, args.quality_steps, seed=seed)
            per_seed.append(toy_quality(trainer, steps))
        row: dict[str, Any] = {"derivative": name, "cpu_s_per_run": (time.process_time() - start) / args.quality_seeds}
        for n in steps:
            row[f"sw@{n}"] = statistics.median(q[n] for q in per_seed)
            row[f"sw@{n}_seeds"] = [q[n] for q in per_seed]
        rows.append(row)
        print(common.table([row], ["derivative", *(f"sw@{n}" for n in steps), "cpu_s_per_run"]))
    return rows


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="unet", choices=sorted(common.PRESETS))
    parser.add_argument("--data", default="shapes", choices=["shapes", "random"])
    parser.add_argument("--batch", type=int, default=64, help="rows drawn (about half have t != r)")
    parser.add_argument("--train-steps", type=int, default=300, help="0: untrained model only")
    parser.add_argument("--epsilons", type=floats, default=EPSILONS)
    parser.add_argument("--precisions", type=lambda s: tuple(s.split(",")), default=PRECISIONS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quality", action="store_true", help="also the toy2d quality comparison")
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--quality-steps", type=int, default=2000)
    parser.add_argument("--quality-seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest when shared)")
    parser.add_argument("--out", help="folder for the JSON (default: $OUT, else benchmarks/results)")
    return parser.parse_args(argv)


def print_accuracy(rows: Sequence[dict[str, Any]], epsilons: Sequence[float]) -> None:
    columns = ["model", "precision", "stencil", *(f"e={e:g}" for e in epsilons), "jvp"]
    for key in ("rel_err_dF", "rel_err_target"):
        print(f"\n{key} (relative L2 error against float64 JVP)")
        print(common.table(pivot(rows, key, epsilons), columns))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    manager = common.plugin_manager()
    device = torch.device(args.device)
    out = common.out_dir(args.out)
    header = {"args": vars(args), "environment": common.environment(device)}
    if not args.quality_only:
        path = out / f"derivative_accuracy_{args.preset.replace('/', '')}_{device.type}.json"
        result = accuracy(manager, args)
        print_accuracy(result["rows"], args.epsilons)
        common.write_json(path, {"benchmark": "derivative_accuracy", **header, **result})
        print(f"wrote {path}")
    if args.quality or args.quality_only:
        path = out / "dde_quality_toy2d_cpu.json"
        common.write_json(path, {"benchmark": "dde_quality", **header, "rows": quality(manager, args)})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
