"""Run ``genflow train`` in subprocesses (one process, or several through torchrun)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import torch

DEBUG = ["--config", "debug", "--no-progress"]

#: A guard against a hung subprocess, not a time budget: far above what any run here takes on a
#: loaded machine (no test asserts how long something takes; speed belongs in benchmarks/).
HANG_S = 1800


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train_cmd(run_dir: pathlib.Path, *overrides: str, nproc: int = 1, resume: bool = False,
              preset: bool = True) -> list[str]:
    """``genflow train --config debug`` (without ``--config`` unless ``preset``) on ``nproc`` ranks."""
    launcher = [sys.executable, "-m", "genflow"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "genflow"]
    return [*launcher, "train", *(DEBUG if preset else []), "--run-dir", str(run_dir), *(["--resume"] if resume else []), *overrides]


def train(run_dir: pathlib.Path, *overrides: str, nproc: int = 1, resume: bool = False, preset: bool = True) -> None:
    proc = subprocess.run(train_cmd(run_dir, *overrides, nproc=nproc, resume=resume, preset=preset), env=env(),
                          capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]


def losses(run_dir: pathlib.Path) -> dict[int, float]:
    from genflow.train.logger import read_metrics

    return {row["step"]: row["loss"] for row in read_metrics(run_dir)}


def final_weights(run_dir: pathlib.Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def checkpoint_steps(run_dir: pathlib.Path) -> list[int]:
    root = run_dir / "checkpoints"
    return sorted(json.loads((p / "genflow.json").read_text())["step"] for p in root.glob("step_*")
                  if not p.name.endswith(".tmp")) if root.is_dir() else []
