"""``genflow config``, ``genflow model-info`` and ``genflow train --dry-run`` resolve one config from
the same arguments, for every preset and for no arguments at all (the demo)."""

from __future__ import annotations

import ast
import pathlib

import pytest
import tomllib

from genflow.cli import main

PRESETS = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))

#: A sample shape each backbone accepts, so model-info needs no dataset (stores may not exist here).
SHAPES = {"mlp": "2", "unet": "3,32,32", "tim-dit": "4,32,32"}


def run_cli(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def model_info_settings(out: str) -> tuple[str, dict[str, object]]:
    """The backbone name and its ``key = value`` lines from ``genflow model-info``'s output."""
    lines = out.splitlines()
    name = lines[0].removeprefix("backbone: ")
    settings = {}
    for line in lines[1:]:
        if not line.startswith("  "):
            break
        key, value = line.strip().split(" = ", 1)
        try:
            settings[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key] = value
    return name, settings


def as_python(value: object) -> object:
    return tuple(as_python(v) for v in value) if isinstance(value, list) else value


def test_presets_are_found():
    assert {"demo", "debug", "toy2d", "imagenet256-xl2"} <= set(PRESETS)


@pytest.mark.parametrize("args", [[], ["--config", "demo"]], ids=["no-arguments", "demo"])
def test_no_arguments_is_the_demo_everywhere(capsys, args):
    assert run_cli(capsys, "config", *args) == run_cli(capsys, "train", "--dry-run", *args)
    demo = run_cli(capsys, "config", "--config", "demo")
    assert run_cli(capsys, "config", *args) == demo
    name, _ = model_info_settings(run_cli(capsys, "model-info", *args, "--shape", SHAPES["unet"]))
    assert name == tomllib.loads(demo)["backbone"]["name"]


@pytest.mark.parametrize("preset", PRESETS)
def test_config_model_info_and_dry_run_agree(capsys, preset):
    args = ["--config", preset, "train.seed=7"]
    printed = run_cli(capsys, "config", *args)
    config = tomllib.loads(printed)
    if config["data"]["name"] == "store" and not config["data"].get("url"):
        # the GPU presets name no store: a dry run opens the data, so it stops at that, in one line
        assert main(["train", "--dry-run", *args]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            "genflow: error: dataset 'store' needs a url: set data.url (a path, memory://, zip::, s3://, ...)"]
    else:
        assert printed == run_cli(capsys, "train", "--dry-run", *args)
    assert config["train"]["seed"] == 7
    backbone = config["backbone"]
    name, settings = model_info_settings(run_cli(capsys, "model-info", *args, "--shape", SHAPES[backbone["name"]]))
    assert name == backbone["name"]
    for key, value in backbone.items():
        if key == "name":
            continue
        assert key in settings, key
        if value != 0:  # 0: "the preset's value", which model-info prints resolved
            assert settings[key] == as_python(value), key
    off = {"projector_out", "projector_depth"}  # 0 means "no projector", a real value
    assert all(v != 0 for k, v in settings.items() if type(v) is int and k not in off), settings  # no placeholders


def test_derivatives_resolves_what_config_prints(capsys, monkeypatch, tmp_path):
    """``--data STORE`` keeps the config's backbone for data of its kind: ``derivatives`` too (it
    resolved on its own and built the store's default backbone instead)."""
    from genflow import config as cfg
    from genflow.commands import derivatives as derivatives_cli

    store = str(tmp_path / "shapes.zarr")
    assert main(["prepare", "--dataset", "shapes", "--out", store, "--resolution", "16", "--count", "16",
                 "--no-progress"]) == 0
    args = ["--config", "shapes-science", "--data", store, "train.seed=3"]
    printed = run_cli(capsys, "config", *args)
    seen = []

    def stop(args, manager, config):  # noqa: ANN001, ANN202 (the step after the resolution)
        seen.append(cfg.to_toml(config))
        raise SystemExit(0)

    monkeypatch.setattr(derivatives_cli, "_chosen", stop)
    with pytest.raises(SystemExit):
        main(["derivatives", *args])
    assert seen == [printed]
    assert tomllib.loads(printed)["backbone"]["name"] == "unet"
