"""``genflow derivatives --config X``: compare every registered derivative provider on the run's own
model and data (``genflow.commands.derivative_report``), as a table and, with ``--json``, a JSON file."""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any

from genflow.commands.outputs import check_output_dir
from genflow.errors import GenflowError

COLUMNS = ("provider", "order", "uses_output", "rel_err_dF", "ratio_fm", "step_s", "saved_mib", "peak_mib", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--providers", help="comma-separated provider names (default: every registered one)")
    parser.add_argument("--batch", type=int, default=0, help="rows per step (default: train.batch_size, at most 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per provider (interleaved on CPUs)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per provider first")
    parser.add_argument("--json", dest="json_path", help="also write the rows as JSON to this new file")
    parser.add_argument("--run", dest="run_dir", help="a trained run folder: its config and weights (not --config)")


def _check_args(args: argparse.Namespace) -> pathlib.Path | None:
    for option, value, low in (("--batch", args.batch, 0), ("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0)):
        if value < low:
            raise GenflowError(f"{option} {value}: must be an integer >= {low}")
    if args.json_path is None:
        return None
    path = pathlib.Path(args.json_path)
    if path.exists():
        raise GenflowError(f"--json '{path}' already exists; choose a new file (genflow does not overwrite it)")
    check_output_dir(path.parent, "--json")
    return path


def _setup(args: argparse.Namespace, manager, config, loaded=None):  # noqa: ANN001, ANN202
    from genflow.commands.derivative_report import Setup
    from genflow.components.build import build_backbone, build_components, build_objective, materialize
    from genflow.interfaces import Batch
    from genflow.train.distributed import pick_device

    device = pick_device(config.train.device, 0)
    if loaded is not None:  # a trained run: its components and (EMA) weights
        components, model = loaded.components, loaded.backbone.to(device)
    else:
        components = build_components(config, manager)
        model = materialize(build_backbone(config, manager, components.spec, meta=True), device, config.train.seed)
    n = args.batch or min(config.train.batch_size, 64)
    reference = components.dataset.reference(n, seed=config.train.seed)
    batch = Batch(x=reference.x.to(device), cond=reference.cond.to(device))
    selection = config.selection("objective")

    def objective(derivative):  # noqa: ANN001, ANN202
        return build_objective(config, manager, path=components.path, derivative=derivative, spec=components.spec)

    baseline = None
    if "fm" in manager.components["objective"] and selection.name != "fm":
        fm = manager.get("objective", "fm")
        baseline = fm.build(fm.config(), path=components.path, derivative=components.derivative, spec=components.spec)
    elif selection.name == "fm":
        baseline = objective(components.derivative)
    return Setup(model=model, batch=batch, path=components.path, spec=components.spec, objective=objective,
                 baseline=baseline, device=device, bf16=config.train.precision == "bf16")


def _chosen(args: argparse.Namespace, manager, config) -> list[Any]:  # noqa: ANN001
    from genflow.commands.derivative_report import candidates
    from genflow.errors import allowed

    derivative = config.selection("derivative")
    found = candidates(manager, (derivative.name, derivative.options))
    if not args.providers:
        return found
    names = [n.strip() for n in args.providers.split(",") if n.strip()]
    unknown = [n for n in names if n not in manager.names("derivative")]
    if unknown:
        raise GenflowError(f"--providers: unknown derivative {', '.join(unknown)}; registered: "
                           f"{allowed(manager.names('derivative'))}")
    return [c for c in found if c.name in names]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def run(args: argparse.Namespace, manager) -> int:  # noqa: ANN001 (a genflow.plugins.PluginManager)
    """The ``derivatives`` command."""
    from genflow.cli import resolve_config
    from genflow.commands.derivative_report import report
    from genflow.commands.timing import table

    json_path = _check_args(args)
    loaded = None
    if args.run_dir is not None:
        from genflow.sampling.runs import load_run

        if args.config or args.overrides or any(getattr(args, slot, None) for slot in ("objective", "backbone", "data")):
            raise GenflowError("--run takes the run's own config; leave out --config, selectors and overrides")
        loaded = load_run(pathlib.Path(args.run_dir), manager)
        config = loaded.config
    else:
        config = resolve_config(args, manager)  # what genflow config prints for the same arguments
    chosen = _chosen(args, manager, config)
    setup = _setup(args, manager, config, loaded)
    rows = report(setup, manager, chosen, warmup=args.warmup, repeats=args.repeats)
    columns = [c for c in COLUMNS if c != "note" and any(c in row for row in rows)]
    notes = sorted({row["note"] for row in rows if "note" in row})
    source = f"run {args.run_dir} ({loaded.source}), " if loaded is not None else ""
    print(f"{source}objective {config.objective.name}, backbone {config.backbone.name}, data {config.data.name}, "
          f"batch {setup.batch.x.shape[0]}, device {setup.device}; rel_err_dF against a float64 JVP, "
          "ratio_fm: training-step time over flow matching's, saved_mib: tensors a step saves for backward")
    print(table([{c: _cell(row.get(c)) for c in columns} for row in rows], columns))
    for note in notes:
        print(f"note: {note}")
    if json_path is not None:
        payload = {"objective": config.objective.name, "backbone": config.backbone.name, "data": config.data.name,
                   "batch": int(setup.batch.x.shape[0]), "device": str(setup.device), "repeats": args.repeats,
                   "rows": rows}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {json_path}")
    return 0
