"""The bad-input corpus: every case exits with code 2, one line on stderr naming the problem, no
traceback, and leaves what was on disk untouched."""

from __future__ import annotations

import hashlib
import pathlib
import shutil

import pytest

from genflow.cli import main


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> pathlib.Path:
    run = tmp_path_factory.mktemp("corpus") / "run"
    assert main(["train", "--config", "debug", "--run-dir", str(run), "--no-progress", "train.steps=4",
                 "train.checkpoint_every=2"]) == 0
    return run


@pytest.fixture
def workspace(tmp_path, finished_run) -> pathlib.Path:
    """A folder holding a copy of a finished run, a text file, a broken TOML file and an empty folder."""
    shutil.copytree(finished_run, tmp_path / "run")
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "bad.toml").write_text("[train\nsteps = ")
    (tmp_path / "empty").mkdir()
    corrupt = shutil.copytree(finished_run, tmp_path / "corrupt")
    (corrupt / "model.pt").write_bytes(b"this is not a torch file")
    for meta in (corrupt / "checkpoints").glob("*/.metadata"):
        meta.write_bytes(b"garbage")
    return tmp_path


def snapshot(root: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


W = "{w}"  # replaced by the workspace path
CASES: list[tuple[str, list[str], str]] = [
    # configs
    ("unknown key", ["config", "objective.sigma_dat=1"], "unknown key objective.sigma_dat; allowed keys here:"),
    ("string for int", ["config", "train.steps=abc"], "train.steps: expected an integer, got 'abc'"),
    ("float for int", ["config", "train.batch_size=1.5"], "train.batch_size: expected an integer"),
    ("int for bool", ["config", "train.compile=1"], "train.compile: expected true or false"),
    ("bad choice", ["config", "train.precision=fp8"], "train.precision: got 'fp8'; allowed: 'fp32', 'bf16'"),
    ("unknown objective", ["config", "--objective", "nope"], "unknown objective 'nope'; registered:"),
    ("unknown derivative", ["config", "--derivative", "nope"], "unknown derivative 'nope'; registered:"),
    ("unknown backbone", ["config", "--backbone", "nope"], "unknown backbone 'nope'; registered:"),
    ("unknown sampler", ["config", "--sampler", "nope"], "unknown sampler 'nope'; registered:"),
    ("unknown path", ["config", "--path", "nope"], "unknown path 'nope'; registered:"),
    ("unknown dataset", ["config", "--data", "imagenet"], "--data 'imagenet': unknown dataset; registered:"),
    ("missing config file", ["config", "--config", f"{W}/missing.toml"], "does not exist"),
    ("malformed toml", ["config", "--config", f"{W}/bad.toml"], "is not valid TOML"),
    ("config is a folder", ["config", "--config", f"{W}/empty"], "does not exist (or is not a file)"),
    ("unknown preset", ["config", "--config", "nosuchpreset"], "neither a file nor a preset; presets:"),
    ("unknown section", ["config", "nosuch.key=1"], "unknown config section 'nosuch'"),
    ("override without =", ["config", "train.steps"], "must look like section.key=value"),
    ("override through a value", ["config", "train.steps.x=1"], "train.steps: expected an integer"),
    ("ratios above one", ["config", "--objective", "tim", "objective.diffusion_ratio=0.95"], "diffusion_ratio"),
    ("negative std", ["config", "--objective", "tim", "objective.p_std=-1"], "p_std"),
    ("name not a string", ["config", "objective.name=3"], "objective.name: expected a string, got 3"),
    ("tuple too short", ["config", "train.betas=[0.9]"], "train.betas"),
    ("toy kind", ["config", "--data", "toy2d", "data.kind=spiral"], "data.kind: got 'spiral'; allowed:"),
    # command-line arguments
    ("unknown option", ["train", "--bogus"], "unrecognized arguments: --bogus"),
    ("resume without run dir", ["train", "--resume"], "--resume needs --run-dir"),
    ("bad plugin option", ["plugins", "-p", "genflow_tim"], "expected -p no:NAME"),
    ("nproc not a number", ["train", "--nproc", "two"], "argument --nproc: invalid int value: 'two'"),
    ("bad shape", ["model-info", "--shape", "4,x"], "--shape '4,x': expected integers"),
    ("bad step list", ["sample", f"{W}/run", "--steps", "0,-1,abc"], "--steps '0,-1,abc': expected positive integers"),
    ("zero samples", ["sample", f"{W}/run", "--num", "0"], "--num 0: expected a positive number"),
    ("class of an unconditional run", ["sample", f"{W}/run", "--class", "3"], "this run is unconditional"),
    ("checkpoint step absent", ["sample", f"{W}/run", "--checkpoint", "999"], "has no checkpoint at step 999"),
    # run folders and environment
    ("run dir is a file", ["train", "--config", "debug", "--run-dir", f"{W}/file.txt"], "exists and is not a folder"),
    ("run dir holds a run", ["train", "--config", "debug", "--run-dir", f"{W}/run"], "already holds a run"),
    ("resume an empty folder", ["train", "--config", "debug", "--resume", "--run-dir", f"{W}/empty"], "holds no run"),
    ("sample a non-run", ["sample", f"{W}/empty"], "is not a genflow run folder"),
    ("batch not divisible", ["train", "--config", "debug", "--run-dir", f"{W}/new", "train.batch_size=63",
                             "train.grad_accumulation=2"], "train.batch_size = 63 is not divisible"),
    # checkpoints
    ("corrupt weights file", ["sample", f"{W}/corrupt"], "is not a genflow weights file"),
    ("corrupt checkpoint", ["sample", f"{W}/corrupt", "--checkpoint", "4"], "cannot be loaded"),
    ("resume with another model shape", ["train", "--resume", "--run-dir", f"{W}/run", "backbone.hidden=48",
                                         "train.steps=6"], "cannot be loaded into this model"),
    # stores
    ("missing store", ["train", "--data", f"{W}/nowhere.zarr", "--run-dir", f"{W}/new2"], "nowhere.zarr"),
    ("folder that is not a store", ["train", "--data", f"{W}/empty", "--run-dir", f"{W}/new3"], "empty"),
    ("prepare from an empty image folder", ["prepare", "--dataset", "imagefolder", "--root", f"{W}/empty",
                                            "--out", f"{W}/out.zarr"], "has no images"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(workspace, capsys, argv, message):
    before = snapshot(workspace)
    code = main([a.replace(W, str(workspace)) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("genflow: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message.replace(W, str(workspace)) in err, err
    assert snapshot(workspace) == before


def test_the_corpus_is_large():
    assert len(CASES) >= 40
