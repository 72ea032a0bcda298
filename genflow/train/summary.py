"""The lines ``genflow train`` ends with: what was trained, how it did, where it is, what to run next.

The summary is built from what the run already has (its last metrics row, the final samples) plus,
for class-conditional single-object ``shapes`` data, the class accuracy of those samples per step
count as the shapes classifier sees it (the ``class_accuracy`` metric of ``genflow eval``, see
docs/metrics.md and docs/eval.md). It is also written to ``summary.json`` in the run folder.
"""

from __future__ import annotations

import json
import pathlib
import shlex
from typing import Any

import attrs
import torch
from torch import Tensor

from genflow.interfaces import Dataset
from genflow.sampling.driver import sample_conditions

#: The metrics of the last row shown in the summary, in this order, when logged.
SUMMARY_METRICS = ("mse_mean", "cos", "loss", "grad_norm", "lr", "samples_per_s")
#: How the summary names a metric where it differs from the logged key.
LABELS = {"mse_mean": "target mse"}


@attrs.frozen(kw_only=True)
class TrainSummary:
    """What ``genflow train`` reports at its end.

    ``stop``: ``"done"`` (reached ``train.steps``), ``"time"`` (``train.max_minutes`` ran out) or
    ``"signal"``. ``seconds``: wall time of ``Trainer.run``. ``metrics``: the last metrics row.
    ``class_accuracy``: ``{sampling steps: accuracy}`` of the ``num_samples`` final samples per step
    count, empty where it does not apply. ``sample_steps``: the run's ``sample.steps``.
    """

    run_dir: pathlib.Path
    step: int
    total_steps: int
    seconds: float
    stop: str
    max_minutes: float = 0.0
    metrics: dict[str, float] = attrs.field(factory=dict)
    class_accuracy: dict[int, float] = attrs.field(factory=dict)
    num_samples: int = 0
    sample_steps: tuple[int, ...] = (1, 2, 4, 8)

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["class_accuracy"] = {str(k): v for k, v in self.class_accuracy.items()}
        return out


def class_accuracy(dataset: Dataset, samples: dict[int, Tensor], device: torch.device) -> dict[int, float]:
    """``{steps: accuracy}`` of class-conditioned ``samples`` (pixels in [-1, 1], conditioned on
    ``sample_conditions``' cycling labels, as the trainer draws them); empty unless the dataset is
    class-labelled single-object ``shapes``. Trains and caches the shapes classifier on first use."""
    from genflow.components.build import cache_dir
    from genflow.eval import classifier as clf
    from genflow.eval.metrics_shapes import classifier_config, shapes_config_of

    shapes = shapes_config_of(dataset)
    if shapes is None or shapes.mode != "single" or not dataset.spec.num_classes or not samples:
        return {}
    model = clf.load_or_train(classifier_config(shapes), cache_dir(), device=device)
    out = {}
    for steps, x in samples.items():
        asked = sample_conditions(dataset.spec, x.shape[0], torch.device("cpu")).labels
        assert asked is not None
        out[steps] = float((model.predict(x.to(device)) == asked).double().mean())
    return out


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _quote(path: pathlib.Path) -> str:
    return shlex.quote(str(path))


def format_summary(summary: TrainSummary) -> list[str]:
    """The summary as lines of text; an early stop is said in the last lines, with the command
    that continues the run."""
    run = _quote(summary.run_dir)
    lines = [f"genflow: trained {summary.step} of {summary.total_steps} steps in {_duration(summary.seconds)}"]
    shown = [f"{LABELS.get(k, k)} {summary.metrics[k]:.4g}" for k in SUMMARY_METRICS
             if k in summary.metrics and not (k == "cos" and summary.metrics[k] == 0)]  # cos: 0 unless directional
    if shown:
        lines.append(f"  final metrics (step {summary.metrics.get('step', summary.step):.0f}): " + ", ".join(shown)
                     + "  (docs/metrics.md)")
    if summary.class_accuracy:
        table = ", ".join(f"{acc:.2f} at {n}" for n, acc in summary.class_accuracy.items())
        lines.append(f"  class accuracy of {summary.num_samples} samples per step count: {table} steps "
                     "(genflow eval for more samples)")
    if summary.stop != "signal":
        lines.append(f"  samples:     {summary.run_dir / 'samples.png'}  (EMA weights: {summary.run_dir / 'model.pt'})")
    lines += [f"  checkpoints: {summary.run_dir / 'checkpoints'}",
              f"  metrics:     {summary.run_dir / 'metrics.jsonl'}, tensorboard --logdir {_quote(summary.run_dir / 'tensorboard')}"]
    steps = ",".join(str(n) for n in summary.sample_steps)
    lines += ["  next:",
              f"    genflow sample {run} --steps {steps}",
              f"    genflow eval {run} --steps {steps}"]
    if summary.stop == "time":
        lines += [f"genflow: stopped early: train.max_minutes = {summary.max_minutes:g} ran out at step {summary.step} "
                  f"of {summary.total_steps}; the samples are of a model trained {summary.step} steps.",
                  f"  Continue with: genflow train --resume --run-dir {run} train.max_minutes=0"]
    elif summary.stop == "signal":
        lines.append(f"genflow: stopped early by a signal at step {summary.step} of {summary.total_steps}. "
                     f"Continue with: genflow train --resume --run-dir {run}")
    return lines


def write_summary(summary: TrainSummary) -> None:
    """``summary.json`` in the run folder (replaced at every end of training)."""
    from genflow.train.checkpoint import write_text_atomic

    write_text_atomic(summary.run_dir / "summary.json", json.dumps(summary.to_json(), indent=2) + "\n")
