"""Run folders of ``genflow train`` in one process: what a new run may write into, the stored config
of a resumed run, its recorded changes, and ``metrics.jsonl`` after a resume."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest
import tomllib

from genflow.cli import main
from genflow.train.runlock import LOCK

DEBUG = ["--config", "debug", "--no-progress"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def copy_run(finished_run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


def files(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_that_is_not_a_run_is_never_written_into(capsys, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    code, _, err = run_cli(capsys, "train", *DEBUG, "--run-dir", str(folder), "train.steps=2")
    assert code == 2 and "is a folder with files that are not a genflow run" in err
    assert len(err.strip().splitlines()) == 1
    assert files(folder) == {"notes.txt": b"my notes"}


def test_an_empty_folder_becomes_the_run(capsys, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    code, out, err = run_cli(capsys, "train", *DEBUG, "--run-dir", str(folder), "train.steps=2")
    assert code == 0, err
    assert (folder / "model.pt").is_file() and not (folder / LOCK).exists()  # the lock is released at the end


def test_a_run_being_trained_refuses_a_second_training(capsys, tmp_path, finished_run):
    """The lock names its holder; the run's files are left as they were."""
    run = copy_run(finished_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                            "since": "2026-01-01 00:00:00 UTC", "token": "x"}))
        before = files(run)
        code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress", "train.steps=6")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"is being trained by pid {holder.pid} on {socket.gethostname()} since 2026-01-01" in err
    assert files(run) == before


def test_a_stale_lock_is_taken_over_with_a_warning(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": int(gone.stdout), "since": "then",
                                        "token": "x"}))
    with pytest.warns(UserWarning, match=f"took over the stale run lock of pid {int(gone.stdout)}"):
        code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress", "train.steps=5")
    assert code == 0, err
    assert not (run / LOCK).exists()


def test_a_lock_of_another_host_is_stale_only_without_heartbeat(tmp_path):
    from genflow.train import runlock

    path = tmp_path / LOCK
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then", "token": "x"}))
    holder = runlock.read_holder(path)
    assert holder is not None and not runlock.is_stale(holder, path)
    old = path.stat().st_mtime - runlock.STALE_S - 1
    os.utime(path, (old, old))
    assert runlock.is_stale(holder, path)


def test_resume_with_a_preset_trains_the_stored_config(capsys, tmp_path, finished_run):
    """A preset whose values differ from the run's is refused, not silently applied."""
    run = copy_run(finished_run, tmp_path)
    before = files(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), *DEBUG)
    assert code == 2 and "train.steps of the run's stored config differ from debug" in err
    assert files(run) == before


def test_a_change_on_resume_is_explicit_and_recorded(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    config_before = (run / "config.toml").read_bytes()
    code, out, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress", "train.steps=6")
    assert code == 0 and "trained 6 of 6 steps" in out, err
    assert (run / "config.toml").read_bytes() == config_before  # written once
    change = json.loads((run / "changes.jsonl").read_text())
    assert change["overrides"] == ["train.steps=6"] and change["changed"] == ["train.steps"]
    # the next resume (same --config and overrides as the first time: the same config) keeps the change
    code, out, err = run_cli(capsys, "train", "--resume", "--run-dir", str(run), *DEBUG, "train.steps=6",
                             "train.checkpoint_every=2")
    assert code == 0 and "trained 6 of 6 steps" in out, err
    assert len((run / "changes.jsonl").read_text().splitlines()) == 1
    assert tomllib.loads((run / "config.toml").read_text())["train"]["steps"] == 4
    code, out, err = run_cli(capsys, "train", "--dry-run", "--resume", str(run))
    assert code == 0 and tomllib.loads(out)["train"]["steps"] == 6, err


def test_metrics_hold_each_step_once_after_a_resume(capsys, tmp_path):
    """Steps logged after the last checkpoint are trained again on resume and logged once."""
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *DEBUG, "--run-dir", str(run), "train.steps=6",
                           "train.checkpoint_every=2", "train.log_every=1")
    assert code == 0, err
    shutil.rmtree(run / "checkpoints" / "step_00000006")  # as if killed after logging steps 5 and 6
    (run / "model.pt").unlink()
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_sample_never_replaces_a_file_without_overwrite(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    before = files(run)
    code, _, err = run_cli(capsys, "sample", str(run), "--out", str(run), "--steps", "1", "--num", "8")
    assert code == 2 and f"--out '{run}' already holds samples.png; pass --overwrite" in err
    assert files(run) == before  # the run's own samples.png is untouched
    assert run_cli(capsys, "sample", str(run), "--steps", "1", "--num", "8")[0] == 0
    grid = (run / "samples" / "samples_1steps.npy").read_bytes()
    code, _, err = run_cli(capsys, "sample", str(run), "--steps", "1", "--num", "8", "--seed", "3")
    assert code == 2 and "samples_1steps.npy" in err and (run / "samples" / "samples_1steps.npy").read_bytes() == grid
    code, _, err = run_cli(capsys, "sample", str(run), "--steps", "1", "--num", "8", "--seed", "3", "--overwrite")
    assert code == 0, err
    assert (run / "samples" / "samples_1steps.npy").read_bytes() != grid


def test_eval_never_replaces_its_outputs_without_overwrite(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    argv = ["eval", str(run), "--steps", "1", "--num", "16", "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    table = (run / "eval" / "eval.json").read_bytes()
    code, _, err = run_cli(capsys, *argv, "--seed", "4")
    assert code == 2 and "already holds eval.json" in err and (run / "eval" / "eval.json").read_bytes() == table
    assert run_cli(capsys, *argv, "--seed", "4", "--overwrite")[0] == 0


def test_resume_to_fewer_steps_than_trained_is_refused(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    before = files(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--no-progress", "train.steps=3")
    assert code == 2 and "train.steps = 3 is before the run's latest checkpoint (step 4)" in err
    assert files(run) == before
