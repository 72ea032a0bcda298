"""Valid input is accepted (overrides on both sides of options, the toy2d store workflow), a dry
run writes nothing, and unwritable run folders are found before training starts."""

from __future__ import annotations

import os
import pathlib

import pytest

from genflow.cli import main


def test_overrides_on_both_sides_of_options(capsys):
    code = main(["config", "train.steps=3", "--objective", "fm", "train.lr=0.25", "--backbone", "mlp", "sample.num=9"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "steps = 3\n" in out and "lr = 0.25\n" in out and "num = 9\n" in out and 'name = "fm"' in out


def test_a_later_override_wins_wherever_it_stands(capsys):
    assert main(["config", "train.steps=3", "--objective", "fm", "train.steps=5"]) == 0
    assert "steps = 5\n" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["config", "--objective", "fm", "stray"], "override 'stray' must look like section.key=value"),
    (["config", "train.steps=3", "--objective", "fm", "--stray", "x=1"], "unrecognized arguments: --stray"),
    (["sample", "runs/x", "train.steps=3"], "unrecognized arguments: train.steps=3"),
])
def test_stray_words_are_still_refused(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_toy2d_store_dry_run_opens_the_store_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "--dataset", "toy2d", "--count", "300", "--option", "kind=rings", "--out", "rings.zarr",
                 "--no-progress"]) == 0
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["train", "--dry-run", "--data", "rings.zarr", "--backbone", "mlp", "train.steps=5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert 'url = "rings.zarr"' in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/ folder, nothing else


def test_unwritable_run_folder_is_found_before_training(tmp_path, monkeypatch, capsys):
    """``os.access`` is what the check asks (root may write anywhere, so the answer is simulated)."""
    import genflow.commands.check

    parent = tmp_path / "locked"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(genflow.commands.check.os, "access",
                        lambda path, mode: False if pathlib.Path(path) == parent else real_access(path, mode))
    code = main(["train", "--config", "debug", "--run-dir", str(parent / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"the folder '{parent}' is not writable" in err
    assert list(parent.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_read_only_run_folder_on_disk(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        assert main(["train", "--config", "debug", "--run-dir", str(parent / "run"), "--no-progress"]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        parent.chmod(0o700)
