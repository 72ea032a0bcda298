"""Numeric guards: a run whose weights end non-finite fails (exit 2) and exports nothing; non-finite
rates, guidance and scales are refused at the door."""

from __future__ import annotations

import pytest

from genflow.cli import main


def test_a_run_ending_with_non_finite_weights_exits_2_and_exports_nothing(tmp_path, capsys):
    # 1e39 overflows float32: the first update makes the weights infinite (train.lr = inf is refused)
    run = tmp_path / "run"
    code = main(["train", "--config", "debug", "--run-dir", str(run), "--no-progress", "train.lr=1e39",
                 "train.steps=3", "train.checkpoint_every=0"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "with non-finite weights" in err and err.count("\n") == 1, err
    assert not (run / "model.pt").exists()
    assert not list(run.glob("checkpoints/step_*"))


@pytest.mark.parametrize("override", ["train.lr=inf", "train.lr=nan", "train.lr=-1e-3", "train.lr=0",
                                      "sample.guidance=nan", "sample.guidance=-inf", "train.max_minutes=inf",
                                      "objective.sigma_d=inf", "sampler.stochasticity=nan"])
def test_non_finite_or_negative_rates_are_refused_before_anything_is_written(tmp_path, capsys, override):
    run = tmp_path / "run"
    code = main(["train", "--config", "debug", "--run-dir", str(run), "--sampler", "transition", override])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"genflow: error: {override.split('=')[0]}") and err.count("\n") == 1, err
    assert not run.exists()
