"""What ``genflow train`` ends with: a summary (steps, time, final metrics, class accuracy, where
everything is, the next commands), a metrics row at the last step, tensorboard grids at the run's
steps, and an early stop by ``train.max_minutes`` said in the last lines with the command that
continues the run."""

from __future__ import annotations

import json
import shlex

import pytest

from genflow.cli import main
from genflow.train.logger import progress_text, read_metrics


def train(capsys, *argv: str) -> tuple[str, str]:
    code = main(["train", "--no-progress", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def test_summary_of_a_finished_run(capsys, tmp_path):
    run = tmp_path / "run"
    out, _ = train(capsys, "--config", "debug", "--run-dir", str(run), "train.steps=7", "train.log_every=5")
    lines = out.splitlines()
    assert lines[0].startswith("genflow: trained 7 of 7 steps in ")
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [5, 7]  # a row at the final step
    assert f"final metrics (step 7): target mse {rows[-1]['mse_mean']:.4g}, loss {rows[-1]['loss']:.4g}" in out
    assert f"tensorboard --logdir {run / 'tensorboard'}" in out and str(run / "checkpoints") in out
    assert f"genflow sample {run} --steps 1,2" in out and f"genflow eval {run} --steps 1,2" in out  # sample.steps
    assert "stopped early" not in out and "class accuracy" not in out  # toy2d: no classes to check
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 7 and summary["stop"] == "done" and summary["metrics"]["mse"] == rows[-1]["mse"]


def test_the_row_averages_the_target_error_over_its_window(capsys, tmp_path):
    every, sparse = tmp_path / "every", tmp_path / "sparse"
    train(capsys, "--config", "debug", "--run-dir", str(every), "train.steps=6", "train.log_every=1")
    train(capsys, "--config", "debug", "--run-dir", str(sparse), "train.steps=6", "train.log_every=4")
    per_step = {r["step"]: r["mse"] for r in read_metrics(every)}
    rows = {r["step"]: r for r in read_metrics(sparse)}
    assert set(rows) == {4, 6}
    assert rows[4]["mse_mean"] == pytest.approx(sum(per_step[s] for s in (1, 2, 3, 4)) / 4, rel=1e-5)
    assert rows[6]["mse_mean"] == pytest.approx((per_step[5] + per_step[6]) / 2, rel=1e-5)
    assert rows[6]["mse"] == per_step[6]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_time_cap_says_so_and_the_printed_command_continues(capsys, tmp_path, monkeypatch):
    run = tmp_path / "run"
    out, _ = train(capsys, "--config", "debug-image", "--run-dir", str(run), "train.steps=6", "train.log_every=4",
                   "train.checkpoint_every=0", "train.max_minutes=1e-9")  # runs out after the first step
    lines = out.splitlines()
    assert lines[0].startswith("genflow: trained 1 of 6 steps")
    assert lines[-2].startswith("genflow: stopped early: train.max_minutes = 1e-09 ran out at step 1 of 6")
    continue_command = lines[-1].removeprefix("  Continue with: ")
    assert continue_command == f"genflow train --resume --run-dir {run} train.max_minutes=0"
    assert [r["step"] for r in read_metrics(run)] == [1]  # the row of the step it stopped at
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop"] == "time" and set(summary["class_accuracy"]) == {"1", "2"}  # debug-image: sample.steps
    assert all(0 <= a <= 1 for a in summary["class_accuracy"].values())
    assert "class accuracy of 8 samples per step count: " in out

    out, _ = train(capsys, *shlex.split(continue_command)[2:])
    assert out.splitlines()[0].startswith("genflow: trained 6 of 6 steps") and "stopped early" not in out
    assert [r["step"] for r in read_metrics(run)] == [1, 4, 6]
    assert_grids_at(run, {1, 6}, tags={"samples/1_steps", "samples/2_steps"})


def assert_grids_at(run, steps: set[int], tags: set[str]) -> None:
    """Tensorboard holds a grid per ``sample.steps`` entry at exactly the run's final steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, set[int]] = {}
    for events in sorted((run / "tensorboard").iterdir()):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["images"]:
            found.setdefault(tag, set()).update(e.step for e in accumulator.Images(tag))
    assert found == {tag: steps for tag in tags}


def test_progress_bar_shows_the_unweighted_target_error():
    assert progress_text({"loss": 0.95, "mse": 0.5, "mse_mean": 0.123456}) == "target mse 0.1235"
    assert progress_text({"loss": 0.95, "mse": 0.123456}) == "target mse 0.1235"
    assert progress_text({"loss": 0.5}) == "loss 0.5000"
