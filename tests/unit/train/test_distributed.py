"""FSDP2 over gloo: world-size invariance, resharded checkpoints, exact resume after SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.unit.train.helpers import HANG_S, checkpoint_steps, env, final_weights, losses, train, train_cmd

pytestmark = pytest.mark.slow  # several processes each (torchrun)

LOG_EVERY_STEP = ["train.log_every=1", "train.batch_size=48"]


def test_two_ranks_match_one_rank_with_the_same_micro_batches(tmp_path):
    """Same global batch, seed and micro-batch split (2 ranks x 1 == 1 rank x 2 accumulation)."""
    train(tmp_path / "one", *LOG_EVERY_STEP, "train.steps=8", "train.grad_accumulation=2")
    train(tmp_path / "two", *LOG_EVERY_STEP, "train.steps=8", nproc=2)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == list(range(1, 9)) and one.keys() == two.keys()
    for step in one:
        assert one[step] == pytest.approx(two[step], rel=1e-5, abs=1e-6)
    # Adam turns float-level gradient differences on near-zero entries into lr-sized steps, so the
    # weights agree to a few learning rates, not to float precision.
    for name, value in final_weights(tmp_path / "one").items():
        torch.testing.assert_close(final_weights(tmp_path / "two")[name], value, rtol=0, atol=3e-3)


@pytest.mark.parametrize("nproc", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_a_run_of_two_ranks_resumes_on_other_world_sizes(tmp_path, nproc):
    """DCP reshards the checkpoint; the data position and the optimizer state carry over. The
    resume keeps the 4 micro-batches per step (2 ranks x 2 = 1 x 4 = 4 x 1: an explicit, recorded
    change of train.grad_accumulation), so it continues as the uninterrupted 2-rank run."""
    both = (*LOG_EVERY_STEP, "train.grad_accumulation=2")
    train(tmp_path / "straight", *both, "train.steps=6", nproc=2)
    run = tmp_path / "run"
    train(run, *both, "train.steps=4", "train.checkpoint_every=4", nproc=2)
    train(run, "--no-progress", "train.steps=6", f"train.grad_accumulation={4 // nproc}", nproc=nproc,
          resume=True, preset=False)
    assert checkpoint_steps(run)[-1] == 6
    resumed, straight = losses(run), losses(tmp_path / "straight")
    assert sorted(resumed) == list(range(1, 7))
    for step in (5, 6):  # a lost data position or optimizer state changes these by far more
        assert resumed[step] == pytest.approx(straight[step], rel=1e-5, abs=1e-6)
    for name, value in final_weights(tmp_path / "straight").items():
        torch.testing.assert_close(final_weights(run)[name], value, rtol=0, atol=3e-3)


def _kill_after_checkpoint(run_dir, step: int, *overrides: str) -> None:
    proc = subprocess.Popen(train_cmd(run_dir, *overrides), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while not any(s >= step for s in checkpoint_steps(run_dir)):
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = ("train.steps=60", "train.checkpoint_every=10", "train.log_every=1")
    train(tmp_path / "straight", *overrides)
    _kill_after_checkpoint(tmp_path / "killed", 20, *overrides)
    assert (tmp_path / "killed" / "model.pt").exists() is False
    train(tmp_path / "killed", *overrides, resume=True)
    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")
    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed")
    for name, value in straight.items():
        assert torch.equal(resumed[name], value), name


def test_a_rank_exits_with_its_code_and_its_output_flushed():
    """``exit_rank`` skips the interpreter's teardown (``os._exit``) but not what was printed."""
    script = "from genflow.train.distributed import exit_rank; print('written', end=''); exit_rank(3)"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_S)
    assert (proc.returncode, proc.stdout) == (3, "written")
