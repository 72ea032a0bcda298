"""Run logging on rank 0: tensorboard scalars and images, ``metrics.jsonl``, a progress bar.

Every logged metric is listed and explained in docs/metrics.md.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import numpy as np
from tqdm import tqdm


class RunLogger:
    """Writes nothing on ranks other than 0. A run resumed at ``start_step`` drops the rows of
    ``metrics.jsonl`` after that step (steps trained again after a crash are logged once)."""

    def __init__(self, run_dir: pathlib.Path, *, enabled: bool, total_steps: int, start_step: int,
                 progress: bool = True) -> None:
        self.enabled = enabled
        self.metrics_path = run_dir / "metrics.jsonl"
        self.writer = None
        self.bar = None
        if not enabled:
            return
        drop_rows_after(self.metrics_path, start_step)
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow import

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step or None)
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                            dynamic_ncols=True, file=sys.stderr, mininterval=1.0)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        assert self.writer is not None
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.bar is not None:
            self.bar.set_postfix_str(progress_text(values), refresh=False)

    def scalars_to_tensorboard(self, step: int, values: dict[str, float]) -> None:
        """Scalars for tensorboard only (not a ``metrics.jsonl`` row: that holds one row per step)."""
        if self.enabled and self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        """``image``: ``(H, W, 3)`` uint8."""
        if self.enabled and self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def message(self, text: str) -> None:
        if self.enabled:
            (tqdm.write if self.bar is not None else print)(text, file=sys.stderr)

    def close_progress(self) -> None:
        """End the progress bar (training is over; logging goes on)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_progress()
        if self.writer is not None:
            self.writer.close()


def progress_text(values: dict[str, float]) -> str:
    """The progress bar's figure: the unweighted error to the regression target averaged over the
    steps since the last row (``mse_mean``, which falls as the model learns; one step's ``mse`` is
    noisy) where the objective logs it, else the loss. The weighted loss (``loss``: with adaptive
    weighting it stays near a constant by design) is in the logs."""
    for key in ("mse_mean", "mse"):
        if key in values:
            return f"target mse {values[key]:.4f}"
    return f"loss {values.get('loss', float('nan')):.4f}"


def drop_rows_after(path: pathlib.Path, step: int) -> None:
    """Rewrite ``path`` (one JSON row per line) without the rows of steps after ``step``."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and _row_step(line) <= step]
    if len(kept) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)


def _row_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return 1 << 62  # a row a crash cut off mid-write: dropped


def read_metrics(run_dir: pathlib.Path) -> list[dict[str, Any]]:
    """The logged rows of a run, one per step (the last one, should a file hold a step twice)."""
    path = run_dir / "metrics.jsonl"
    rows: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["step"]] = row
    return [rows[k] for k in sorted(rows)]
