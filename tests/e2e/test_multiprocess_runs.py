"""Multi-process runs: one run folder agreed by every rank (also with a rank that starts late),
bounded failure when a rank dies, signals forwarded by ``--nproc``, and two "nodes" on localhost
(torchrun's c10d rendezvous over gloo) that train, are killed, and resume to the same weights."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from genflow.train.runlock import LOCK
from tests.unit.train.helpers import checkpoint_steps, env, final_weights, losses

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEBUG = ["--config", "debug", "--no-progress"]
#: Runs genflow with rank ``GENFLOW_TEST_DELAY_RANK`` starting ``GENFLOW_TEST_DELAY_S`` late.
DELAYED = [sys.executable, "-m", "tests.unit.train.delayed_rank"]
HANG_GUARD_S = 400  # a hung run fails the test instead of blocking the suite


def run_env(**extra: str) -> dict[str, str]:
    return {**env(), "PYTHONPATH": str(ROOT), **extra}


def late_rank(seconds: float = 3.0) -> dict[str, str]:
    return run_env(GENFLOW_TEST_DELAY_RANK="1", GENFLOW_TEST_DELAY_S=str(seconds))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(*args: str, nnodes: int = 1, nproc: int = 2, endpoint: str = "") -> list[str]:
    rendezvous = ["--standalone"] if nnodes == 1 else [
        f"--nnodes={nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=genflow-test"]
    return [sys.executable, "-m", "torch.distributed.run", *rendezvous, f"--nproc-per-node={nproc}",
            "-m", "tests.unit.train.delayed_rank", *args]


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=HANG_GUARD_S)
    return proc.returncode, err


def genflow_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("genflow:")]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first listed before their own children."""
    found = children_of(pid)
    return [*found, *(d for child in found for d in descendants(child))]


def rank_pid(launcher: int, rank: int) -> int:
    for pid in children_of(launcher):
        with open(f"/proc/{pid}/environ", "rb") as f:
            if f"RANK={rank}".encode() in f.read().split(b"\0"):
                return pid
    raise AssertionError(f"no rank {rank} under pid {launcher}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_checkpoint(run_dir: pathlib.Path, step: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not any(s >= step for s in checkpoint_steps(run_dir)):
        assert proc.poll() is None, "training ended before the checkpoint"
        assert time.monotonic() < deadline, "no checkpoint (hang guard)"
        time.sleep(0.1)


@pytest.mark.parametrize("launcher", ["nproc", pytest.param("torchrun", marks=pytest.mark.slow)])
def test_a_late_rank_joins_the_one_run_folder(tmp_path, launcher):
    """Without --run-dir every rank trains into the folder rank 0 chose, also when rank 1 starts late."""
    train = ["train", *DEBUG, "train.steps=4", "train.checkpoint_every=2"]
    argv = [*DELAYED, train[0], "--nproc", "2", *train[1:]] if launcher == "nproc" else torchrun(*train)
    proc = subprocess.Popen(argv, cwd=tmp_path, env=late_rank(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    code, err = finish(proc)
    assert code == 0, err[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and checkpoint_steps(runs[0]) == [2, 4] and (runs[0] / "model.pt").is_file()
    assert json.loads((runs[0] / "checkpoints" / "step_00000004" / "genflow.json").read_text())["world_size"] == 2
    assert not (runs[0] / LOCK).exists()


def long_nproc_run(run: pathlib.Path, every: int = 4) -> tuple[subprocess.Popen[str], list[int]]:
    """A 4000-step ``--nproc 2`` run saving every ``every`` steps, once its first checkpoint past
    step 4 is written, and its ranks' pids."""
    proc = subprocess.Popen([*DELAYED, "train", "--nproc", "2", *DEBUG, "--run-dir", str(run), "train.steps=4000",
                             f"train.checkpoint_every={every}"], env=run_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(run, 4, proc)
    return proc, children_of(proc.pid)


@pytest.mark.parametrize("every", [4, pytest.param(1, marks=pytest.mark.slow)])
def test_a_killed_rank_ends_the_run_with_one_line(tmp_path, every):
    """SIGKILL of rank 1: the launcher names it, every rank ends, the last checkpoint stays complete
    and the run resumes from it. Saving every step, the kill mostly lands inside a save, where rank 0
    sees the loss in DCP's collectives: that is still the one line about rank 1."""
    run = tmp_path / "run"
    proc, ranks = long_nproc_run(run, every)
    os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
    code, err = finish(proc)
    assert code == 128 + signal.SIGKILL, err[-3000:]
    lines = genflow_lines(err)
    assert len(lines) == 1 and lines[0].startswith("genflow: error: rank 1 was killed by SIGKILL"), err[-3000:]
    last = checkpoint_steps(run)[-1]
    assert f"(step {last}); continue with: genflow train --resume {run}" in lines[0]
    assert "Traceback" not in err
    assert not any(alive(pid) for pid in ranks) and not (run / LOCK).exists()
    resumed = subprocess.run([*DELAYED, "train", "--nproc", "2", "--resume", str(run), "--no-progress",
                              f"train.steps={last + 2}"], env=run_env(), capture_output=True, text=True,
                             timeout=HANG_GUARD_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_steps(run)[-1] == last + 2 and sorted(losses(run))[-1] == last + 2


@pytest.mark.slow
def test_sigterm_to_nproc_is_forwarded_to_every_rank(tmp_path):
    run = tmp_path / "run"
    proc, ranks = long_nproc_run(run)
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    assert [line for line in genflow_lines(err) if "stopped by signal 15" in line], err[-3000:]
    assert not any(alive(pid) for pid in ranks) and not (run / LOCK).exists()
    step = json.loads((run / "checkpoints" / f"step_{checkpoint_steps(run)[-1]:08d}" / "trainer.json").read_text())
    assert step["step"] == checkpoint_steps(run)[-1] > 4  # the stop saved a checkpoint of its own


# ------------------------------------------------------------------------------------------------
# two "nodes" on localhost
# ------------------------------------------------------------------------------------------------


def two_nodes(cwd: tuple[pathlib.Path, pathlib.Path], *train: str, pause: float = 0.0) -> list[subprocess.Popen[str]]:
    """Two torchrun agents (1 process each) meeting at a c10d rendezvous on localhost; ``pause``:
    seconds every rank sleeps after each checkpoint (``tests/unit/train/delayed_rank.py``)."""
    endpoint = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen(torchrun("train", *train, nnodes=2, nproc=1, endpoint=endpoint), cwd=folder,
                             env={**late_rank(2.0), "GENFLOW_TEST_PAUSE_S": str(pause)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True) for folder in cwd]


def full_checkpoint(path: pathlib.Path) -> None:
    """A checkpoint of both ranks: every rank's data file, and the world size it was saved from."""
    assert json.loads((path / "genflow.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in path.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]


@pytest.mark.slow
def test_two_nodes_train_and_resume_after_kill_to_the_same_weights(tmp_path):
    overrides = ("train.steps=24", "train.checkpoint_every=6", "train.log_every=1", "train.keep_last=10")
    straight = two_nodes((tmp_path, tmp_path), *DEBUG, "--run-dir", "straight", *overrides)
    for proc in straight:
        code, err = finish(proc)
        assert code == 0, err[-3000:]
    for step in (6, 12, 18, 24):
        full_checkpoint(tmp_path / "straight" / "checkpoints" / f"step_{step:08d}")

    # each rank rests 30 s after a checkpoint: the kill lands before the run can end, however fast
    killed = two_nodes((tmp_path, tmp_path), *DEBUG, "--run-dir", "killed", *overrides, pause=30.0)
    wait_for_checkpoint(tmp_path / "killed", 6, killed[0])
    for proc in killed:  # kill -9 of both nodes: ranks (torchrun may start them in sessions of their own), agents
        for pid in [*descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for proc in killed:
        proc.communicate(timeout=HANG_GUARD_S)
    assert not (tmp_path / "killed" / "model.pt").exists()
    for step in checkpoint_steps(tmp_path / "killed"):
        full_checkpoint(tmp_path / "killed" / "checkpoints" / f"step_{step:08d}")
    for proc in two_nodes((tmp_path, tmp_path), "--resume", "killed", "--no-progress"):
        code, err = finish(proc)
        assert code == 0, err[-3000:]
    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")
    reference, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    for name, value in reference.items():
        assert torch.equal(resumed[name], value), name


@pytest.mark.slow
def test_a_run_folder_per_node_fails_at_start(tmp_path):
    """Nodes that do not share the folder: one line at start, nothing left behind, no hang."""
    nodes = (tmp_path / "a", tmp_path / "b")
    for folder in nodes:
        folder.mkdir()
    errors = []
    for proc in two_nodes(nodes, *DEBUG, "--run-dir", "run", "train.steps=4"):
        code, err = finish(proc)
        assert code != 0
        errors.append(err)
    assert any("rank 1 cannot see the run folder 'run' that rank 0 opened" in err for err in errors), errors
    assert not list(nodes[0].iterdir()) and not list(nodes[1].iterdir())
