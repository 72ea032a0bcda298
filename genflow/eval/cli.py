"""``genflow eval RUN_DIR``: every metric at every step count, as a JSON table, plots and grids.

    genflow eval runs/X                                    # steps 1,2,...,128; every metric that fits
    genflow eval runs/X --steps 1,4,16 --num 500 --metrics fd_shapes,class_accuracy
    genflow eval runs/tim --compare runs/fm                # both runs in one table and plot
    genflow eval runs/X --metrics fid_inception --metric-option fid_inception.weights=inception-2015-12-05.pt

Writes ``<out>/eval.json``, ``<out>/eval_<metric>.png`` (metric vs steps, log axis) and
``<out>/samples_<k>steps.png`` (``<out>/<run>/...`` with ``--compare``), and prints the table.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence
from typing import Any

import torch

from genflow.commands import numbers
from genflow.commands.outputs import check_output_dir, check_replaceable
from genflow.commands.sample import DEFAULT_NUM_POINTS, add_common_arguments, parse_steps
from genflow.errors import GenflowError
from genflow.eval import plot, report, select
from genflow.eval.sweep import SamplesHook, SweepSettings, context_for, evaluate, progress_bar
from genflow.interfaces import EvalContext
from genflow.plugins import PluginManager
from genflow.sampling.runs import LoadedRun, load_run
from genflow.sampling.visualize import plot_samples

DEFAULT_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
DEFAULT_NUM_IMAGES = 1000
GRID_IMAGES = 64


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, steps_default=",".join(map(str, DEFAULT_STEPS)),
                         num_default=f"{DEFAULT_NUM_POINTS} points or {DEFAULT_NUM_IMAGES} images",
                         out_default="RUN_DIR/eval")
    parser.add_argument("--metrics", help="comma-separated metric names (default: every one that fits the data; "
                                          "see genflow plugins)")
    parser.add_argument("--metric-option", action="append", default=[], metavar="METRIC.FIELD=VALUE",
                        help="a metric setting, e.g. fid_inception.weights=PATH (repeatable)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR", help="more runs for the same table and plots")
    parser.add_argument("--batch-size", type=numbers.positive, default=1024, help="samples per sampler call (default 1024)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise GenflowError("--device cuda: CUDA is not available here; use --device cpu")
    return torch.device(name)


def _labels(run_dirs: Sequence[pathlib.Path]) -> list[str]:
    """Short distinct labels: folder names, numbered where two are equal."""
    labels: list[str] = []
    for path in run_dirs:
        name = path.resolve().name or str(path)
        labels.append(name if name not in labels else f"{name}-{len(labels)}")
    return labels


def _settings(args: argparse.Namespace, run: LoadedRun, device: torch.device) -> SweepSettings:
    defaults, spec = run.config.sample, run.components.spec
    steps = parse_steps(args.steps) if args.steps else DEFAULT_STEPS
    num = args.num if args.num is not None else (DEFAULT_NUM_IMAGES if spec.is_image else DEFAULT_NUM_POINTS)
    if num < 2:
        raise GenflowError(f"--num {num}: metrics need at least 2 samples")
    if args.batch_size < 1:
        raise GenflowError(f"--batch-size {args.batch_size}: expected a positive number")
    return SweepSettings(steps=tuple(dict.fromkeys(steps)), num=num,
                         seed=defaults.seed if args.seed is None else args.seed,
                         guidance=defaults.guidance if args.guidance is None else args.guidance,
                         batch_size=args.batch_size, device=device)


def _grid_writer(run: LoadedRun, folder: pathlib.Path, settings: SweepSettings, title: str) -> SamplesHook:
    """``on_samples`` hook: one labelled grid (or scatter over the data) per step count."""
    spec = run.components.spec
    reference = None if spec.is_image else run.components.dataset.reference(settings.num, seed=settings.seed + 7).x

    def write(steps: int, samples: torch.Tensor) -> None:
        shown = samples[:GRID_IMAGES] if spec.is_image else samples
        plot_samples({steps: shown}, folder / f"samples_{steps}steps.png", reference=reference, title=title)

    return write


def run_eval(args: argparse.Namespace, manager: PluginManager) -> int:
    device = _device(args.device)
    if args.steps:
        parse_steps(args.steps)  # a bad list fails before any run is opened
    run_dirs = [pathlib.Path(args.run_dir), *(pathlib.Path(p) for p in args.compare)]
    names = select.parse_names(args.metrics, manager)
    options = select.parse_metric_options(args.metric_option, manager)
    runs = [load_run(d, manager, step=args.checkpoint, device=device) for d in run_dirs]
    settings = _settings(args, runs[0], device)
    out = pathlib.Path(args.out) if args.out else run_dirs[0] / "eval"
    check_output_dir(out, "--out")

    first = runs[0]
    chosen = select.select(names, options, manager, first.components.dataset, first.config.data.name)
    contexts = [context_for(run, settings) for run in runs]
    for run, context in zip(runs, contexts, strict=True):
        select.check_applicable(chosen, context, run.config.data.name)
    grids = [f"samples_{k}steps.png" for k in settings.steps]
    folders = [f"{label}/" for label in _labels(run_dirs)] if args.compare else [""]
    check_replaceable(out, ["eval.json", *(f"eval_{name}.png" for name in chosen.metrics),
                            *(f"{folder}{grid}" for folder in folders for grid in grids)], "--out", args.overwrite)
    with progress_bar(settings, len(runs), progress=not args.no_progress) as bar:  # one estimate for all runs
        records = [_evaluate_one(run_dir, label, run, context, chosen, settings, out, args, bar)
                   for run_dir, label, run, context in zip(run_dirs, _labels(run_dirs), runs, contexts, strict=True)]
    _write_outputs(records, chosen, settings, out)
    return 0


def _evaluate_one(run_dir: pathlib.Path, label: str, run: LoadedRun, context: EvalContext, chosen: select.MetricSet,
                  settings: SweepSettings, out: pathlib.Path, args: argparse.Namespace, bar: Any) -> report.RunRecord:
    """Sweep one run, writing its grids into ``out`` (``out/<label>`` when comparing runs)."""
    folder = out if not args.compare else out / label
    title = f"{label}: {run.config.objective.name} / {run.config.sampler.name}, weights {run.source}"
    results = evaluate(run, chosen.metrics, settings, context=context, bar=bar,
                       on_samples=_grid_writer(run, folder, settings, title), label=label if args.compare else "")
    provenance = {name: metric.provenance(context) for name, metric in chosen.metrics.items()}
    return report.RunRecord(label=label, run_dir=run_dir, checkpoint=args.checkpoint, run=run, results=results,
                            provenance={name: p for name, p in provenance.items() if p})


def _classifier_lines(records: list[report.RunRecord]) -> list[str]:
    """One line per classifier the metrics used: its file, held-out accuracy and real images."""
    users: dict[str, tuple[list[str], dict]] = {}
    for record in records:
        for name, provenance in record.provenance.items():
            if "classifier" in provenance and "held_out_accuracy" in provenance:
                names, _ = users.setdefault(str(provenance["classifier"]), ([], provenance))
                names.extend([name] if name not in names else [])
    lines = []
    for path, (names, provenance) in users.items():
        where = f" on {provenance['accuracy_on']}" if "accuracy_on" in provenance else ""
        reference = f"; real images: {provenance['reference']}" if "reference" in provenance else ""
        lines.append(f"classifier of {', '.join(names)} ({path}): held-out accuracy "
                     f"{provenance['held_out_accuracy']:.4f}{where}{reference}")
    return lines


def _write_outputs(records: list[report.RunRecord], chosen: select.MetricSet, settings: SweepSettings,
                   out: pathlib.Path) -> None:
    document = report.record_json(records, chosen.metrics, chosen.configs, settings)
    report.write_json(document, out / "eval.json")
    subject = f"{records[0].label} ({records[0].run.config.objective.name}): " if len(records) == 1 else ""
    for name, metric in chosen.metrics.items():
        series = {r.label: [(s.steps, s.values[name]) for s in r.results] for r in records}
        plot.plot_metric(series, out / f"eval_{name}.png", metric=name, higher_is_better=metric.higher_is_better,
                         title=f"{subject}{settings.num} samples, seed {settings.seed}, guidance {settings.guidance:g}")
    for record in records:
        print(f"{record.label} ({record.run.config.objective.name} / {record.run.config.sampler.name}, "
              f"weights {record.run.source}; {settings.num} samples, seed {settings.seed}, "
              f"guidance {settings.guidance:g})")
        print(report.table(record, chosen.metrics))
    for line in _classifier_lines(records):
        print(line)
    print(f"genflow: wrote {out / 'eval.json'}, {len(chosen.metrics)} plots and sample grids to {out}")
