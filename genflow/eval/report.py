"""The evaluation record: ``eval.json`` (provenance + one row per run, metric and step count) and a
plain-text table."""

from __future__ import annotations

import datetime
import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from genflow import config as cfg
from genflow.config.convert import unstructure
from genflow.eval.sweep import StepResult, SweepSettings
from genflow.interfaces import Metric
from genflow.sampling.runs import LoadedRun

FORMAT_VERSION = 1
NOISE = ("torch.randn((num, *sample_shape), generator=torch.Generator().manual_seed(seed)), drawn on the CPU; "
         "the same noise and conditions for every step count")


@attrs.frozen(kw_only=True)
class RunRecord:
    """One evaluated run: its label, folder, the checkpoint asked for, its results and what each
    metric depended on (``provenance``: classifier or weights file and checksum)."""

    label: str
    run_dir: pathlib.Path
    checkpoint: int | None
    run: LoadedRun
    results: list[StepResult]
    provenance: dict[str, dict[str, Any]] = attrs.field(factory=dict)


def run_info(record: RunRecord, settings: SweepSettings) -> dict[str, Any]:
    """Where the weights came from and how they were sampled."""
    config = record.run.config
    return {
        "label": record.label,
        "run_dir": str(record.run_dir),
        "checkpoint": record.checkpoint,
        "weights": record.run.source,
        "objective": config.objective.name,
        "sampler": {"name": config.sampler.name, "options": unstructure(config.sampler.options)},
        "path": config.path.name,
        "data": config.data.name,
        "guidance": settings.guidance,
        "seed": settings.seed,
        "num": settings.num,
        "config": cfg.to_dict(config),
        "metric_provenance": record.provenance,
        "sampling_seconds": {str(r.steps): round(r.seconds, 3) for r in record.results},
    }


def _json_value(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


def rows(record: RunRecord, settings: SweepSettings) -> list[dict[str, Any]]:
    """One self-describing row per metric and step count."""
    out = []
    for result in record.results:
        for metric, value in result.values.items():
            out.append({"run": record.label, "metric": metric, "steps": result.steps, "value": _json_value(value),
                        "weights": record.run.source, "sampler": record.run.config.sampler.name,
                        "guidance": settings.guidance, "seed": settings.seed, "num": settings.num})
    return out


def record_json(records: Sequence[RunRecord], metrics: Mapping[str, Metric], metric_configs: Mapping[str, Any],
                settings: SweepSettings) -> dict[str, Any]:
    """The whole ``eval.json`` document."""
    from genflow import __version__

    return {
        "format": "genflow-eval",
        "version": FORMAT_VERSION,
        "genflow": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"steps": list(settings.steps), "num": settings.num, "seed": settings.seed,
                     "guidance": settings.guidance, "device": str(settings.device), "noise": NOISE},
        "metrics": {name: {"higher_is_better": metric.higher_is_better,
                           "config": unstructure(metric_configs[name])} for name, metric in metrics.items()},
        "runs": [run_info(r, settings) for r in records],
        "rows": [row for r in records for row in rows(r, settings)],
    }


def write_json(document: Mapping[str, Any], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _cell(value: float) -> str:
    if not math.isfinite(value):
        return "nan"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


def table(record: RunRecord, metrics: Mapping[str, Metric]) -> str:
    """Steps down, metrics across; arrows say which way is better."""
    headers = ["steps"] + [f"{name} {'^' if m.higher_is_better else 'v'}" for name, m in metrics.items()]
    body = [[str(r.steps)] + [_cell(r.values[name]) for name in metrics] for r in record.results]
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in [headers, *body]]
    return "\n".join(lines)
