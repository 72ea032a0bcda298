"""Crash safety: SIGTERM checkpoints and exits, a full disk keeps the last checkpoint, non-finite steps are skipped."""

from __future__ import annotations

import errno
import pathlib
import signal
import subprocess
import time

import pytest
import torch

from genflow import config as cfg
from genflow.errors import GenflowError
from genflow.interfaces import ObjectiveOutput
from genflow.train import checkpoint
from genflow.train.trainer import Trainer
from tests.unit.train.helpers import HANG_S, checkpoint_steps, env, final_weights, losses, train, train_cmd


def make_trainer(manager, run_dir: pathlib.Path, *overrides: str) -> Trainer:
    config = cfg.load(manager, config_file="debug", overrides=list(overrides))
    return Trainer(config, manager, run_dir, progress=False)


@pytest.mark.slow  # three training processes
def test_sigterm_saves_a_checkpoint_and_resume_finishes_identically(tmp_path):
    overrides = ("train.steps=400", "train.log_every=1", "train.checkpoint_every=1000")
    proc = subprocess.Popen(train_cmd(tmp_path / "stopped", *overrides), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 5):
        assert proc.poll() is None, "training ended before it could be stopped"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by signal 15" in err and "--resume" in err
    stopped_at = checkpoint_steps(tmp_path / "stopped")
    assert len(stopped_at) == 1 and 5 <= stopped_at[0] < 400
    train(tmp_path / "stopped", *overrides, resume=True)
    train(tmp_path / "straight", *overrides)
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    for name, value in final_weights(tmp_path / "straight").items():
        assert torch.equal(final_weights(tmp_path / "stopped")[name], value)


def test_full_disk_during_a_save_keeps_the_previous_checkpoint(manager, tmp_path, monkeypatch):
    trainer = make_trainer(manager, tmp_path / "run", "train.steps=8", "train.checkpoint_every=4")
    real_save = checkpoint.dcp.save
    calls = {"n": 0}

    def flaky_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint.dcp, "save", flaky_save)
    with pytest.raises(GenflowError, match=r"saving the checkpoint of step 8 failed .*No space left on device.*"
                                           r"step_00000004 is intact"):
        trainer.run()
    assert checkpoint_steps(tmp_path / "run") == [4]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))
    monkeypatch.setattr(checkpoint.dcp, "save", real_save)
    resumed = Trainer(trainer.config, manager, tmp_path / "run", resume=True, progress=False)
    assert resumed.step == 4 and resumed.run() == 8


def test_non_finite_steps_are_skipped_then_the_run_stops(manager, tmp_path, monkeypatch):
    trainer = make_trainer(manager, tmp_path / "run", "train.steps=50", "train.checkpoint_every=5",
                           "train.max_nonfinite_steps=3", "train.log_every=1")
    objective = trainer.components.objective
    real_loss = objective.loss

    def poisoned(backbone, batch, *, generator):
        out = real_loss(backbone, batch, generator=generator)
        if trainer.step >= 7:  # from step 8 on every loss is NaN
            return ObjectiveOutput(loss=out.loss * float("nan"), per_sample=out.per_sample, logs=out.logs)
        return out

    monkeypatch.setattr(objective, "loss", poisoned)
    with pytest.raises(GenflowError, match=r"3 steps in a row had a non-finite loss or gradient \(seen at step 10\)"):
        trainer.run()
    assert all(torch.isfinite(torch.tensor(v)) for s, v in losses(tmp_path / "run").items() if s <= 7)
    good = checkpoint.latest_checkpoint(tmp_path / "run")
    assert good is not None and good[0] == 5
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # NaN never reached the weights
    assert all(torch.isfinite(s).all() for a in trainer.ema.averages.values() for s in a.shadow_params)  # nor the EMA
