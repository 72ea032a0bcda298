"""The bad-input corpus: every case exits with code 2, one line on stderr naming the problem, no
traceback, and leaves what was on disk untouched (crafted checkpoints included: their payloads
never run)."""

from __future__ import annotations

import hashlib
import pathlib
import shutil

import pytest
import zarr

from genflow.cli import main
from tests.unit.train import crafted


@pytest.fixture(scope="module")
def crafted_runs(tmp_path_factory, finished_run) -> pathlib.Path:
    """Copies of the finished run whose checkpoint or weights file was tampered with; the crafted
    payloads would create files in ``markers/`` if anything unpickled them."""
    root = tmp_path_factory.mktemp("crafted")
    markers = root / "markers"
    markers.mkdir()
    last = "checkpoints/step_00000004"
    crafted.poison_metadata(shutil.copytree(finished_run, root / "evil") / last, markers / "metadata")
    crafted.poison_optimizer_value(shutil.copytree(finished_run, root / "evilopt") / last, markers / "optimizer", root)
    crafted.poison_weights(shutil.copytree(finished_run, root / "evilpt") / "model.pt", markers / "weights")
    crafted.escape_storage(shutil.copytree(finished_run, root / "escape") / last)
    (shutil.copytree(finished_run, root / "badstate") / last / "trainer.json").write_text("{\"step\": 4")
    (shutil.copytree(finished_run, root / "nometa") / last / ".metadata").unlink()
    return root


@pytest.fixture
def workspace(tmp_path, finished_run, crafted_runs) -> pathlib.Path:
    """A folder holding a copy of a finished run, a text file, a broken TOML file, an empty folder,
    a Python file, a zarr group that is no genflow store and the crafted runs."""
    shutil.copytree(finished_run, tmp_path / "run")
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "bad.toml").write_text("[train\nsteps = ")
    (tmp_path / "empty").mkdir()
    (tmp_path / "evil.py").write_text(f"import pathlib\npathlib.Path({str(tmp_path / 'ran')!r}).touch()\n")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    corrupt = shutil.copytree(finished_run, tmp_path / "corrupt")
    (corrupt / "model.pt").write_bytes(b"this is not a torch file")
    for meta in (corrupt / "checkpoints").glob("*/.metadata"):
        meta.write_bytes(b"garbage")
    for name in ("evil", "evilopt", "evilpt", "escape", "badstate", "nometa"):
        shutil.copytree(crafted_runs / name, tmp_path / name)
    return tmp_path


def snapshot(root: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


W = "{w}"  # replaced by the workspace path
EVAL = ["--steps", "1", "--num", "16", "--no-progress"]
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
    ("resume without run dir", ["train", "--resume"], "--resume needs the run to continue"),
    ("bad plugin option", ["plugins", "-p", "genflow_tim"], "expected -p no:NAME"),
    ("nproc not a number", ["train", "--nproc", "two"], "argument --nproc: invalid int value: 'two'"),
    ("bad shape", ["model-info", "--shape", "4,x"], "--shape '4,x': expected integers"),
    ("bad step list", ["sample", f"{W}/run", "--steps", "0,-1,abc"], "--steps '0,-1,abc': expected positive integers"),
    ("zero samples", ["sample", f"{W}/run", "--num", "0"], "--num 0: expected a positive number"),
    ("class of an unconditional run", ["sample", f"{W}/run", "--class", "3"], "this run is unconditional"),
    ("checkpoint step absent", ["sample", f"{W}/run", "--checkpoint", "999"], "has no checkpoint at step 999"),
    # run folders and environment
    ("run dir is a file", ["train", "--config", "debug", "--run-dir", f"{W}/file.txt"], "is a file, not a folder"),
    ("run dir holds a run", ["train", "--config", "debug", "--run-dir", f"{W}/run"], "already holds a run"),
    ("resume an empty folder", ["train", "--config", "debug", "--resume", "--run-dir", f"{W}/empty"], "holds no run"),
    ("sample a non-run", ["sample", f"{W}/empty"], "is not a genflow run folder"),
    ("batch not divisible", ["train", "--config", "debug", "--run-dir", f"{W}/new", "train.batch_size=63",
                             "train.grad_accumulation=2"], "train.batch_size = 63 is not divisible"),
    # checkpoints
    ("corrupt weights file", ["sample", f"{W}/corrupt"], "model.pt' is damaged or not a torch file"),
    ("corrupt checkpoint", ["sample", f"{W}/corrupt", "--checkpoint", "4"], "cannot be loaded"),
    ("resume with another model shape", ["train", "--resume", "--run-dir", f"{W}/run", "backbone.hidden=48",
                                         "train.steps=6"], "cannot be loaded into this model"),
    ("checkpoint without metadata", ["sample", f"{W}/nometa", "--checkpoint", "4"], "cannot be loaded: it has no .metadata"),
    ("damaged trainer state", ["train", "--resume", "--run-dir", f"{W}/badstate", "train.steps=6"],
     "trainer.json is missing or damaged"),
    # untrusted checkpoints: crafted pickles are refused and never run (their markers stay absent)
    ("crafted metadata, resume", ["train", "--resume", "--run-dir", f"{W}/evil", "train.steps=6"],
     ".metadata references 'io.open', which DCP checkpoint metadata never holds; genflow refuses to unpickle it"),
    ("crafted metadata, sample", ["sample", f"{W}/evil", "--checkpoint", "4"], "refuses to unpickle"),
    ("crafted metadata, eval", ["eval", f"{W}/evil", "--checkpoint", "4", *EVAL], "refuses to unpickle"),
    ("crafted optimizer value, resume", ["train", "--resume", "--run-dir", f"{W}/evilopt", "train.steps=6"],
     "value 'optim.param_groups.0.lr' holds objects other than tensors and plain data"),
    ("crafted weights file, sample", ["sample", f"{W}/evilpt"], "model.pt' holds objects other than tensors"),
    ("crafted weights file, eval", ["eval", f"{W}/evilpt", *EVAL], "model.pt' holds objects other than tensors"),
    ("checkpoint data outside its folder", ["train", "--resume", "--run-dir", f"{W}/escape", "train.steps=6"],
     "points outside the checkpoint folder"),
    # configs are TOML data; components come from registered plugins only, never from an import path
    ("config file is python", ["config", "--config", f"{W}/evil.py"], "is not valid TOML"),
    ("component named by a module path", ["config", "--objective", "os.system"], "unknown objective 'os.system'"),
    ("override naming a python object", ["config", 'backbone.name="subprocess:Popen"'],
     "unknown backbone 'subprocess:Popen'"),
    ("dataset named by a module", ["config", "--data", "genflow_tim.plugin"], "--data 'genflow_tim.plugin': unknown dataset"),
    # outputs: never a file or below one
    ("run dir below a file", ["train", "--config", "debug", "--run-dir", f"{W}/file.txt/run"],
     "--run-dir '{w}/file.txt/run' is inside '{w}/file.txt', which is a file"),
    ("eval output is a file", ["eval", f"{W}/run", *EVAL, "--out", f"{W}/file.txt"], "--out '{w}/file.txt' is a file"),
    ("eval output below a file", ["eval", f"{W}/run", *EVAL, "--out", f"{W}/file.txt/eval"], "which is a file"),
    ("sample output is a file", ["sample", f"{W}/run", "--out", f"{W}/file.txt"], "--out '{w}/file.txt' is a file"),
    ("sample output below a file", ["sample", f"{W}/run", "--out", f"{W}/file.txt/s"], "which is a file"),
    # stores
    ("missing store", ["train", "--data", f"{W}/nowhere.zarr", "--run-dir", f"{W}/new2"], "nowhere.zarr"),
    ("folder that is not a store", ["train", "--data", f"{W}/empty", "--run-dir", f"{W}/new3"], "empty"),
    ("prepare from an empty image folder", ["prepare", "--dataset", "imagefolder", "--root", f"{W}/empty",
                                            "--out", f"{W}/out.zarr"], "has no images"),
    ("store with an unknown protocol", ["train", "--data", "nosuchproto://x.zarr", "--run-dir", f"{W}/new4"],
     "cannot open store 'nosuchproto://x.zarr': Protocol not known: nosuchproto"),
    ("zarr group that is no genflow store", ["train", "--data", f"{W}/plain.zarr", "--run-dir", f"{W}/new5"],
     "is a zarr group but not a genflow store"),
    ("prepare over a file", ["prepare", "--dataset", "toy2d", "--out", f"{W}/file.txt"], "exists and is not a genflow store"),
    # run folders and outputs: nothing that exists is written into or replaced without consent
    ("run dir holding other files", ["train", "--config", "debug", "--run-dir", W],
     "is a folder with files that are not a genflow run"),
    ("resume with a preset that differs", ["train", "--resume", f"{W}/run", "--config", "debug"],
     "of the run's stored config differ from debug"),
    ("resume to fewer steps", ["train", "--resume", f"{W}/run", "train.steps=2"],
     "train.steps = 2 is before the run's latest checkpoint (step 4)"),
    ("resume and run dir disagree", ["train", "--resume", f"{W}/run", "--run-dir", f"{W}/corrupt"], "name two runs"),
    ("sample over the run's own grid", ["sample", f"{W}/run", "--out", f"{W}/run"], "already holds samples.png"),
    ("tokenizer over an existing file", ["tokenizer", "train", "--data", f"{W}/plain.zarr", "--out", f"{W}/file.txt"],
     "--out '{w}/file.txt' exists; pass --overwrite"),
    ("prepare to an unknown protocol", ["prepare", "--dataset", "toy2d", "--out", "nosuchproto://x.zarr"],
     "Protocol not known: nosuchproto"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(workspace, crafted_runs, capsys, argv, message):
    before = snapshot(workspace)
    code = main([a.replace(W, str(workspace)) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("genflow: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message.replace(W, str(workspace)) in err, err
    assert snapshot(workspace) == before
    assert not list((crafted_runs / "markers").iterdir()), "a crafted payload ran"


def test_the_corpus_is_large():
    assert len(CASES) >= 40
