"""Random-kill crash safety: SIGKILL a training run again and again (inside checkpoint writes, in
between, during start-up and the final export), resume it each time with ``genflow train --resume``,
and check that every resume starts from the latest complete checkpoint and that the run ends with
exactly the weights, EMA, optimizer state and losses of an uninterrupted run.

CI runs 4 kills; the full test is 20 (about 2 minutes on 2 CPU cores)::

    GENFLOW_KILL_TEST_N=20 OMP_NUM_THREADS=1 pytest -q -s tests/unit/train/test_kill_resume.py

``GENFLOW_KILL_TEST_SEED`` picks another (reproducible) schedule of kill points and delays.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
import tomllib
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from genflow.train import safe_load
from tests.unit.train.helpers import HANG_S, env, final_weights, losses

pytestmark = pytest.mark.slow  # a dozen training processes

KILLS = int(os.environ.get("GENFLOW_KILL_TEST_N", "4"))
SEED = int(os.environ.get("GENFLOW_KILL_TEST_SEED", "0"))
EVERY, KEEP = 3, 2
STEPS = 8 * (KILLS + 1)
ARGS = ["--config", "debug", "--no-progress", f"train.steps={STEPS}", f"train.checkpoint_every={EVERY}",
        f"train.keep_last={KEEP}", "train.log_every=1"]
#: Kill ``k`` uses ``KINDS[k % 6]``; the last of six or more kills hits the final export.
KINDS = ("write", "timer", "commit", "prune", "timer", "timer")
ROOT = pathlib.Path(__file__).resolve().parents[3]
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def launch(run_dir: pathlib.Path, log: pathlib.Path | None = None, kill: str = "", resume: bool = False):
    extra = {"GENFLOW_TEST_KILL": kill, "GENFLOW_TEST_KILL_LOG": str(log or "")}
    argv = [sys.executable, "-m", "tests.unit.train.kill_runner", "train", *ARGS, "--run-dir", str(run_dir),
            *(["--resume"] if resume else [])]
    return subprocess.Popen(argv, cwd=ROOT, env={**env(), **extra}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def complete_checkpoints(run_dir: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """Every ``step_N`` folder, each checked to be complete: metadata that the safe reader accepts,
    every data file it names present and long enough, and genflow's own files."""
    root = run_dir / "checkpoints"
    found = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))) \
        if root.is_dir() else []
    for step, path in found:
        metadata = safe_load.read_dcp_metadata(path)
        for info in metadata.storage_data.values():
            assert (path / info.relative_path).stat().st_size >= info.offset + info.length, path
        assert json.loads((path / "genflow.json").read_text())["step"] == step, path
        assert set(json.loads((path / "trainer.json").read_text())) == {"step", "scheduler", "data"}, path
    assert len(found) <= KEEP + 1  # a crash after a commit and before the pruning leaves one extra
    return found


def next_kill(k: int, latest: int, rng: np.random.Generator) -> str:
    """Kill ``k``: a point (see kill_runner) at a step spread over the run, after the resume point."""
    if k == KILLS - 1 and len(KINDS) <= KILLS:
        return "export@0"
    kind = KINDS[k % len(KINDS)]
    step = int(np.clip(round((k + 1) * STEPS / (KILLS + 1)) + rng.integers(-2, 3), latest + 1, STEPS - EVERY))
    if kind != "timer":
        return f"{kind}@{step}"
    if len(KINDS) <= KILLS and rng.random() < 1 / 3:  # from the process start: start-up, load or training
        return f"timer@0+{rng.uniform(0.0, 3.5):.3f}"
    return f"timer@{step}+{rng.uniform(0.0, 0.4):.3f}"


def read_log(path: pathlib.Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines()) if path.exists() else {}


def check_resume(log: dict[str, str], latest: tuple[int, pathlib.Path] | None, what: str) -> bool:
    """A process that started training resumed from the latest complete checkpoint (or from step 0
    when there was none); returns whether it got that far."""
    if "start" not in log:
        assert "load" not in log, what
        return False
    if latest is None:
        assert log == {"start": "0"}, (what, log)
    else:
        assert log == {"load": str(latest[1]), "start": str(latest[0])}, (what, log, latest)
    return True


def full_state(checkpoint: pathlib.Path, scratch: pathlib.Path) -> dict[str, Any]:
    flat = scratch / f"{checkpoint.parent.parent.name}.pt"
    dcp_to_torch_save(checkpoint, flat)
    return torch.load(flat, weights_only=True)


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_random_sigkills_resume_to_the_uninterrupted_result(tmp_path):
    started = time.monotonic()
    rng = np.random.default_rng(SEED)
    straight = launch(tmp_path / "straight")  # the uninterrupted reference, alongside
    run_dir = tmp_path / "killed"
    latest = None
    report = []
    for k in range(KILLS):
        kill = next_kill(k, latest[0] if latest else 0, rng)
        log = tmp_path / f"log{k}"
        proc = launch(run_dir, log, kill, resume=k > 0)
        _, err = proc.communicate(timeout=HANG_S)
        assert proc.returncode == -9, f"kill {k} ({kill}) did not happen: exit {proc.returncode}\n{err[-2000:]}"
        reached = check_resume(read_log(log), latest, f"process {k}")
        assert reached or kill.startswith("timer@0"), f"kill {k} ({kill}) hit before training"
        inside = sorted(p.name for p in (run_dir / "checkpoints").glob("*.tmp"))
        assert tomllib.loads((run_dir / "config.toml").read_text())["train"]["steps"] == STEPS
        found = complete_checkpoints(run_dir)
        assert found or latest is None, "a crash lost the only complete checkpoint"
        assert not found or latest is None or found[-1][0] >= latest[0], "a crash lost the latest checkpoint"
        latest = found[-1] if found else None
        report.append(f"kill {k:2d} {kill:<18} left {', '.join(inside) or 'no partial save':<40} "
                      f"latest complete: {latest[0] if latest else None}")
    log = tmp_path / "log-final"
    proc = launch(run_dir, log, resume=True)
    _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 0, err[-3000:]
    assert check_resume(read_log(log), latest, "final resume")
    _, err = straight.communicate(timeout=HANG_S)
    assert straight.returncode == 0, err[-3000:]

    reference, resumed = tmp_path / "straight", run_dir
    assert_identical(final_weights(resumed), final_weights(reference), "model.pt (EMA)")
    last = f"checkpoints/step_{STEPS:08d}"
    assert_identical(full_state(resumed / last, tmp_path), full_state(reference / last, tmp_path), "checkpoint")
    assert (resumed / last / "trainer.json").read_text() == (reference / last / "trainer.json").read_text()
    assert losses(resumed) == losses(reference) and len(losses(reference)) == STEPS
    assert not list((resumed / "checkpoints").glob("*.tmp"))
    print("\n".join(["", *report, f"{KILLS} kills, all resumed; final state bit-identical; "
                                  f"{time.monotonic() - started:.0f} s"]))
