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
from tests.corpus import bad_stores
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


@pytest.fixture(scope="module")
def damaged_stores(tmp_path_factory) -> pathlib.Path:
    """A small good shapes store and one damaged copy per ``bad_stores.DAMAGES`` entry."""
    from genflow.data.autoencoders import Identity
    from genflow.data.pipeline import prepare_store
    from genflow.data.shapes import ShapesConfig
    from genflow.data.sources import ShapesSource

    root = tmp_path_factory.mktemp("stores")
    good = root / "good.zarr"
    prepare_store(ShapesSource(ShapesConfig(resolution=8, count=48)), Identity(), str(good), progress=False)
    for name in bad_stores.DAMAGES:
        bad_stores.damaged_copy(good, root, name)
    bad_stores.corrupt_zip(root)
    return root


@pytest.fixture
def workspace(tmp_path, finished_run, crafted_runs, damaged_stores) -> pathlib.Path:
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
    shutil.copytree(damaged_stores, tmp_path / "stores")
    (tmp_path / "noweights").mkdir()
    shutil.copy(finished_run / "config.toml", tmp_path / "noweights" / "config.toml")
    (tmp_path / "latin1.toml").write_bytes("[train]\n# caf\xe9\nsteps = 3\n".encode("latin-1"))
    (tmp_path / "deep.toml").write_text("x = " + "[" * 2000 + "]" * 2000 + "\n")
    (tmp_path / "huge.toml").write_text("# padding\n" * 200_000)
    return tmp_path


def snapshot(root: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


W = "{w}"  # replaced by the workspace path
EVAL = ["--steps", "1", "--num", "16", "--no-progress"]
CASES: list[tuple[str, list[str], str]] = [
    # configs
    ("unknown key", ["config", "--config", "debug", "objective.sigma_dat=1"], "unknown key objective.sigma_dat; allowed keys here:"),
    ("string for int", ["config", "--config", "debug", "train.steps=abc"], "train.steps: expected an integer, got 'abc'"),
    ("float for int", ["config", "--config", "debug", "train.batch_size=1.5"], "train.batch_size: expected an integer"),
    ("int for bool", ["config", "--config", "debug", "train.compile=1"], "train.compile: expected true or false"),
    ("bad choice", ["config", "--config", "debug", "train.precision=fp8"], "train.precision: got 'fp8'; allowed: 'fp32', 'bf16'"),
    ("unknown objective", ["config", "--config", "debug", "--objective", "nope"], "unknown objective 'nope'; registered:"),
    ("unknown derivative", ["config", "--config", "debug", "--derivative", "nope"], "unknown derivative 'nope'; registered:"),
    ("unknown backbone", ["config", "--config", "debug", "--backbone", "nope"], "unknown backbone 'nope'; registered:"),
    ("unknown sampler", ["config", "--config", "debug", "--sampler", "nope"], "unknown sampler 'nope'; registered:"),
    ("unknown path", ["config", "--config", "debug", "--path", "nope"], "unknown path 'nope'; registered:"),
    ("unknown dataset", ["config", "--config", "debug", "--data", "imagenet"], "--data 'imagenet': unknown dataset; registered:"),
    ("missing config file", ["config", "--config", f"{W}/missing.toml"], "does not exist"),
    ("malformed toml", ["config", "--config", f"{W}/bad.toml"], "is not valid TOML"),
    ("config is a folder", ["config", "--config", f"{W}/empty"], "does not exist (or is not a file)"),
    ("unknown preset", ["config", "--config", "nosuchpreset"], "neither a file nor a preset; presets:"),
    ("unknown section", ["config", "--config", "debug", "nosuch.key=1"], "unknown config section 'nosuch'"),
    ("override without =", ["config", "--config", "debug", "train.steps"], "must look like section.key=value"),
    ("override through a value", ["config", "--config", "debug", "train.steps.x=1"], "train.steps is not a table"),
    ("ratios above one", ["config", "--config", "debug", "--objective", "tim", "objective.diffusion_ratio=0.95"], "diffusion_ratio"),
    ("negative std", ["config", "--config", "debug", "--objective", "tim", "objective.p_std=-1"], "p_std"),
    ("name not a string", ["config", "--config", "debug", "objective.name=3"], "objective.name: expected a string, got 3"),
    ("tuple too short", ["config", "--config", "debug", "train.betas=[0.9]"], "train.betas"),
    ("toy kind", ["config", "--config", "debug", "--data", "toy2d", "data.kind=spiral"], "data.kind: got 'spiral'; allowed:"),
    # command-line arguments
    ("unknown option", ["train", "--bogus"], "unrecognized arguments: --bogus"),
    ("resume without run dir", ["train", "--resume"], "--resume needs the run to continue"),
    ("bad plugin option", ["plugins", "-p", "genflow_tim"], "expected -p no:NAME"),
    ("nproc not a number", ["train", "--nproc", "two"], "argument --nproc: expected an integer in 0..1024 (ASCII digits), got 'two'"),
    ("bad shape", ["model-info", "--config", "debug", "--shape", "4,x"], "--shape '4,x': expected integers"),
    ("bad step list", ["sample", f"{W}/run", "--steps", "0,-1,abc"], "--steps '0,-1,abc': expected positive integers"),
    ("zero samples", ["sample", f"{W}/run", "--num", "0"], "argument --num: 0 is outside 1..1000000"),
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
    ("component named by a module path", ["config", "--config", "debug", "--objective", "os.system"], "unknown objective 'os.system'"),
    ("override naming a python object", ["config", "--config", "debug", 'backbone.name="subprocess:Popen"'],
     "unknown backbone 'subprocess:Popen'"),
    ("dataset named by a module", ["config", "--config", "debug", "--data", "genflow_tim.plugin"], "--data 'genflow_tim.plugin': unknown dataset"),
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
    # config values of the right type outside their domain (genflow.config.domains)
    ("zero batch", ["config", "train.batch_size=0"], "train.batch_size = 0: expected an integer > 0"),
    ("negative log interval", ["config", "train.log_every=-5"], "train.log_every = -5: expected an integer > 0"),
    ("negative checkpoint interval", ["config", "train.checkpoint_every=-1"], "train.checkpoint_every = -1"),
    ("zero grad accumulation", ["config", "train.grad_accumulation=0"], "train.grad_accumulation = 0"),
    ("infinite lr", ["config", "train.lr=inf"], "train.lr: expected a finite number, got inf"),
    ("nan lr", ["config", "train.lr=nan"], "train.lr: expected a finite number, got nan"),
    ("negative lr", ["config", "train.lr=-1e-3"], "train.lr = -0.001: expected a number > 0"),
    ("negative weight decay", ["config", "train.weight_decay=-0.1"], "train.weight_decay = -0.1"),
    ("zero adam eps", ["config", "train.eps=0"], "train.eps = 0.0: expected a number > 0"),
    ("ema decay of one", ["config", "train.ema_decay=[1.0]"], "train.ema_decay = [1.0]: expected a list"),
    ("empty ema list", ["config", "train.ema_decay=[]"], "train.ema_decay = []: expected a list of at least 1"),
    ("adam beta of one", ["config", "train.betas=[0.9, 1.0]"], "train.betas = [0.9, 1.0]: expected a list of 2"),
    ("negative adam beta", ["config", "train.betas=[-0.1, 0.9]"], "each a number in [0, 1)"),
    ("infinite time budget", ["config", "train.max_minutes=inf"], "train.max_minutes: expected a finite number"),
    ("zero non-finite budget", ["config", "train.max_nonfinite_steps=0"], "train.max_nonfinite_steps = 0"),
    ("negative seed", ["config", "train.seed=-1"], "train.seed = -1: expected an integer >= 0"),
    ("integer past 64 bits", ["config", "train.steps=99999999999999999999"], "within 64 bits"),
    ("empty sample steps", ["config", "sample.steps=[]"], "sample.steps = []: expected a list"),
    ("zero sample step", ["config", "sample.steps=[0, 4]"], "sample.steps = [0, 4]"),
    ("zero sample count", ["config", "sample.num=0"], "sample.num = 0"),
    ("nan guidance in config", ["config", "sample.guidance=nan"], "sample.guidance: expected a finite number"),
    ("zero mlp width", ["config", "--backbone", "mlp", "backbone.hidden=0"], "backbone.hidden = 0"),
    ("zero unet channel", ["config", "--backbone", "unet", "backbone.channels=[0, 8]"], "backbone.channels = [0, 8]"),
    ("empty unet channels", ["config", "--backbone", "unet", "backbone.channels=[]"], "backbone.channels = []"),
    ("negative dit size", ["config", "--backbone", "tim-dit", "backbone.depth=-2"], "backbone.depth = -2"),
    ("zero dde epsilon", ["config", "--derivative", "dde", "derivative.epsilon=0"], "derivative.epsilon = 0.0"),
    ("infinite sigma_d", ["config", "--objective", "tim", "objective.sigma_d=inf"], "objective.sigma_d: expected a finite"),
    ("fm dropout above one", ["config", "--objective", "fm", "objective.label_dropout=1.5"], "objective.label_dropout = 1.5"),
    ("reversed guidance interval", ["config", "--sampler", "transition", "sampler.guidance_interval=[0.9, 0.1]"],
     "in increasing order"),
    ("negative stochasticity", ["config", "--sampler", "transition", "sampler.stochasticity=-1"],
     "sampler.stochasticity = -1.0"),
    ("zero toy std", ["config", "--data", "toy2d", "data.std=0"], "data.std = 0.0: expected a number > 0"),
    ("negative workers", ["config", "--data", "shapes", "data.num_workers=-1"], "data.num_workers = -1"),
    ("repeated shapes", ["config", "--data", "shapes", 'data.shapes=["star", "star"]'], "no item twice"),
    ("zero text width", ["config", "text_encoder.dim=0"], "text_encoder.dim = 0"),
    ("bad tokenizer checksum", ["config", 'text_encoder.tokenizer_sha256="xyz"'], "64 lowercase hex digits"),
    # config files: size, depth, encoding, empty --config
    ("config not utf-8", ["config", "--config", f"{W}/latin1.toml"], "is not UTF-8 text (byte"),
    ("config nested too deep", ["config", "--config", f"{W}/deep.toml"], "more than 16 levels deep"),
    ("config too large", ["config", "--config", f"{W}/huge.toml"], "is larger than 1048576 bytes"),
    ("empty --config", ["train", "--config", "", "--dry-run"], "--config '': empty"),
    ("override nested too deep", ["config", "train.betas=" + "[" * 500 + "]" * 500], "more than 16 levels deep"),
    # CLI numbers beyond what they can hold, non-finite numbers
    ("huge --num", ["sample", f"{W}/run", "--num", "10" * 20], "argument --num:"),
    ("seed past 64 bits", ["sample", f"{W}/run", "--seed", str(2**64)], "argument --seed:"),
    ("negative seed option", ["sample", f"{W}/run", "--seed", "-1"], "argument --seed: -1 is outside"),
    ("unicode digits", ["sample", f"{W}/run", "--num", "\u0661\u0662"], "(ASCII digits)"),
    ("unicode class", ["sample", f"{W}/run", "--class", "\u0663"], "argument --class:"),
    ("nan guidance", ["sample", f"{W}/run", "--guidance", "nan"], "argument --guidance: expected a finite number"),
    ("infinite guidance, eval", ["eval", f"{W}/run", *EVAL, "--guidance", "inf"], "argument --guidance:"),
    ("zero eval batch", ["eval", f"{W}/run", *EVAL, "--batch-size", "0"], "argument --batch-size:"),
    ("negative checkpoint", ["sample", f"{W}/run", "--checkpoint", "-4"], "argument --checkpoint:"),
    ("huge nproc", ["train", "--nproc", "100000"], "argument --nproc: 100000 is outside"),
    ("prepare zero count", ["prepare", "--dataset", "toy2d", "--count", "0", "--out", f"{W}/t.zarr"], "argument --count:"),
    ("tokenizer vocab in other digits", ["tokenizer", "train", "--data", f"{W}/x", "--vocab-size", "\u0968", "--out",
                                         f"{W}/t.model"], "argument --vocab-size:"),
    # --dry-run checks the data as a start would, and writes nothing
    ("dry run, missing store", ["train", "--dry-run", "--data", f"{W}/nowhere.zarr", "--run-dir", f"{W}/new7"],
     "no genflow store at"),
    ("dry run, damaged store", ["train", "--dry-run", "--data", f"{W}/stores/labels_out_of_range.zarr",
                                "--run-dir", f"{W}/new8"], "labels holds 999"),
    ("dry run, batch split", ["train", "--dry-run", "--config", "debug", "train.batch_size=63",
                              "train.grad_accumulation=2"], "is not divisible"),
    ("dry run, points for an image backbone", ["train", "--dry-run", "--data", "toy2d", "--backbone", "unet"],
     "for points use --backbone mlp"),
    # stores whose contents disagree with their metadata, opened by train and by check
    *[(f"store: {name}", ["train", "--data", f"{W}/stores/{name.replace(' ', '_')}.zarr", "--run-dir", f"{W}/new9"],
       phrase) for name, (_, phrase) in bad_stores.DAMAGES.items()],
    *[(f"check: {name}", ["check", f"{W}/stores/{name.replace(' ', '_')}.zarr"], phrase)
      for name, (_, phrase) in bad_stores.DAMAGES.items()],
    ("corrupt zip store", ["train", "--data", f"{W}/stores/corrupt.zip", "--run-dir", f"{W}/new10"],
     "is not a readable zip archive"),
    ("check a corrupt zip store", ["check", f"{W}/stores/corrupt.zip"], "is not a readable zip archive"),
    ("check a missing path", ["check", f"{W}/nowhere"], "does not exist; give a latent store"),
    ("check an empty folder", ["check", f"{W}/empty"], "no genflow store at"),
    ("check a run without weights", ["check", f"{W}/noweights"], "has neither model.pt nor a checkpoint"),
    ("check a run with damaged weights", ["check", f"{W}/corrupt"], "model.pt' is damaged or not a torch file"),
    ("check a run with crafted weights", ["check", f"{W}/evilpt"], "holds objects other than tensors"),
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
    assert len(CASES) >= 140
