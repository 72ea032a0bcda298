"""End-to-end: the ``genflow`` command on tiny presets, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from genflow.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plugins_lists_every_kind_with_its_plugin(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    for kind in ("objectives", "derivatives", "backbones", "samplers", "paths", "datasets"):
        assert f"\n{kind}:" in out
    assert "tim            genflow_tim" in out and "fm             genflow_fm" in out


def test_train_then_sample_toy2d(capsys, tmp_path):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--config", "debug", "--objective", "fm", "--run-dir", str(run),
                             "--no-progress", "train.steps=12")
    assert code == 0, err
    assert (run / "config.toml").is_file() and (run / "model.pt").is_file() and (run / "samples.png").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 12 and np.isfinite(rows[-1]["loss"])
    code, out, err = run_cli(capsys, "sample", str(run), "--steps", "1,3", "--num", "64", "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert (tmp_path / "s" / "samples_3steps.png").is_file()
    assert np.load(tmp_path / "s" / "samples_1steps.npy").shape == (64, 2)
    assert "sliced Wasserstein distance to data" in out


@pytest.mark.parametrize("derivative", ["dde", "jvp"])
def test_train_tim_with_each_derivative(capsys, tmp_path, derivative):
    code, _, err = run_cli(capsys, "train", "--config", "debug", "--derivative", derivative,
                           "--run-dir", str(tmp_path / derivative), "--no-progress", "train.steps=6")
    assert code == 0, err


def test_resolved_config_is_written_before_step_0(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--config", "debug", "--run-dir", str(run), "--no-progress",
                           "train.steps=0")
    assert code == 0, err
    assert 'name = "tim"' in (run / "config.toml").read_text()


def test_dry_run_and_config_print_toml(capsys):
    code, out, _ = run_cli(capsys, "train", "--config", "debug", "--dry-run", "objective.adaptive=false",
                           "train.lr=1e-4")
    assert code == 0 and "adaptive = false" in out and "lr = 0.0001" in out
    code, out, _ = run_cli(capsys, "config", "--objective", "fm")
    assert code == 0 and '[objective]\nname = "fm"' in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dry-run", "objective.sigma_dat=1"], "unknown key objective.sigma_dat"),
        (["train", "--dry-run", "train.steps=many"], "train.steps: expected an integer"),
        (["train", "--dry-run", "--objective", "nope"], "unknown objective 'nope'; registered: fm, tim"),
        (["train", "--dry-run", "--derivative", "nope"], "unknown derivative 'nope'; registered: dde, jvp"),
        (["train", "--dry-run", "--data", "imagenet"], "--data 'imagenet': unknown dataset; registered:"),
        (["train", "--dry-run", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
        (["train", "--resume"], "--resume needs the run to continue"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["sample", "/nonexistent/run"], "is not a genflow run folder"),
        (["plugins", "-p", "genflow_tim"], "expected -p no:NAME"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_toml_file(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps=")
    code, _, err = run_cli(capsys, "train", "--dry-run", "--config", str(bad))
    assert code == 2 and "is not valid TOML" in err and err.count("\n") == 1


def test_existing_run_is_not_overwritten(capsys, tmp_path):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--config", "debug", "--run-dir", str(run), "--no-progress", "train.steps=2")[0] == 0
    before = (run / "model.pt").read_bytes()
    code, _, err = run_cli(capsys, "train", "--config", "debug", "--run-dir", str(run), "--no-progress")
    assert code == 2 and "already holds a run; continue it with" in err
    assert (run / "model.pt").read_bytes() == before


def test_blocking_a_plugin_from_the_command_line(capsys):
    code, out, _ = run_cli(capsys, "-p", "no:genflow_tim", "plugins")
    assert code == 0 and "genflow_tim" not in out


@pytest.mark.parametrize(("blocked", "objective", "other"), [("genflow_fm", "tim", "genflow_fm"),
                                                            ("genflow_tim", "fm", "genflow_tim")])
def test_the_core_trains_with_the_other_plugin_blocked(capsys, tmp_path, blocked, objective, other):
    """The core stands alone: the linear path, the MLP and the time grid are its own, and its defaults
    name no plugin's component, so each objective trains with the other plugin blocked."""
    run = tmp_path / "run"
    args = ["-p", f"no:{blocked}", "train", "--data", "toy2d", "--objective", objective, "backbone.hidden=16",
            "backbone.depth=1", "backbone.embedding_dim=16", "train.steps=3", "train.batch_size=16",
            "sample.steps=[1, 2]", "sample.num=8", "--run-dir", str(run), "--no-progress"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    config = (run / "config.toml").read_text()
    assert f'name = "{objective}"' in config and ("[derivative]" in config) == (objective == "tim")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and np.isfinite(rows[-1]["loss"])
    code, out, _ = run_cli(capsys, "-p", f"no:{blocked}", "plugins")
    assert code == 0 and other not in out


def test_an_unset_objective_is_one_clear_error(capsys, tmp_path):
    config = tmp_path / "no-objective.toml"
    config.write_text('[data]\nname = "toy2d"\n')
    code, _, err = run_cli(capsys, "config", "--config", str(config))
    assert code == 2
    assert err.strip().splitlines() == [
        "genflow: error: objective.name: not set; choose one of the registered objectives: fm, tim "
        "(e.g. --objective NAME, or --config demo)"]


def test_config_prints_what_train_runs(capsys, tmp_path):
    """Without --config, `genflow config` resolves the same preset as `genflow train`."""
    code, printed, err = run_cli(capsys, "config", "train.steps=3")
    assert code == 0, err
    code, dry_run, err = run_cli(capsys, "train", "--dry-run", "train.steps=3")
    assert code == 0, err
    assert printed == dry_run and 'name = "tim"' in printed


def test_console_script_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "genflow", "train", "--config", "debug", "--dry-run",
                           "train.lr=fast"],
                          capture_output=True, text=True, timeout=1800)  # a hang guard
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["genflow: error: train.lr: expected a number, got 'fast'"]


@pytest.mark.parametrize(("preset", "millions"), [("B/4", 128.8), ("XL/2", 664.1)])
def test_model_info_counts_the_reference_presets(capsys, preset, millions):
    code, out, err = run_cli(capsys, "model-info", "--backbone", "tim-dit", f"backbone.preset={preset}",
                             "--shape", "4,32,32", "--classes", "1000")
    assert code == 0, err
    count = int(out.split("parameters: ")[1].split()[0].replace(",", ""))
    assert abs(count / 1e6 - millions) / millions < 0.01


@pytest.mark.parametrize(
    "selectors",
    [
        ["--derivative", "dde"],
        ["--derivative", "jvp"],
        ["--objective", "fm"],
        ["--backbone", "unet", "backbone.channels=[8, 16]"],
        ["--path", "trigflow"],
    ],
    ids=["tim-dde", "tim-jvp", "fm", "unet", "trigflow"],
)
def test_train_and_sample_on_a_tiny_image_preset(capsys, tmp_path, selectors):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--config", "debug-image", *selectors, "--run-dir", str(run), "--no-progress")
    assert code == 0, err
    code, out, err = run_cli(capsys, "sample", str(run), "--steps", "1,2", "--num", "4", "--class", "3")
    assert code == 0, err
    assert np.load(run / "samples" / "samples_2steps.npy").shape == (4, 3, 16, 16)


@pytest.mark.parametrize("preset", ["debug", "debug-image", "demo", "toy2d", "imagenet256-b4", "imagenet256-xl2",
                                    "imagenet512-xl1", "debug-text", "shapes-text", "shapes-compose", "t2i-xl1", "shapes-science"])
def test_every_preset_resolves(capsys, preset):
    # `config` resolves; `train --dry-run` also opens the data, which the ImageNet presets leave to data.url
    code, out, err = run_cli(capsys, "config", "--config", preset)
    assert code == 0, err
    assert "[train]" in out


def test_activation_checkpointing_gives_the_same_run(capsys, tmp_path):
    for name, extra in (("plain", []), ("ckpt", ["train.activation_checkpointing=true"])):
        code, _, err = run_cli(capsys, "train", "--config", "debug", "--run-dir", str(tmp_path / name), "--no-progress",
                               "train.steps=3", "train.log_every=1", *extra)
        assert code == 0, err
    plain = [json.loads(r)["loss"] for r in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    ckpt = [json.loads(r)["loss"] for r in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert plain == pytest.approx(ckpt, rel=1e-6)
