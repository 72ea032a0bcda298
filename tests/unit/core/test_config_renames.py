"""Config keys that moved (``genflow.config.renames``): old names read under the new ones, in config
files, overrides and old run folders; a disagreement is one line."""

from __future__ import annotations

import json
import shutil
import warnings

import attrs
import pytest
import tomli_w
import tomllib

from genflow import config as cfg
from genflow.cli import main
from genflow.config.renames import RENAMES, apply_renames
from genflow.config.schema import SECTIONS, SLOTS
from genflow.errors import ConfigError
from genflow.plugins import PluginManager

MANAGER = PluginManager()


def _load(*overrides: str, config_file: str = "debug") -> cfg.RunConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cfg.load(MANAGER, config_file=config_file, overrides=overrides)


def test_old_keys_resolve_like_the_new_ones():
    old = _load("objective.diagonal_groups=2", "objective.adaptive_eps=0.001",
                "objective.guidance_target_variant='guided-tangent'", "derivative.batched=false")
    new = _load("objective.experimental.diagonal_groups=2", "objective.experimental.adaptive_eps=0.001",
                "objective.experimental.guidance_target_variant='guided-tangent'")
    assert cfg.to_dict(old) == cfg.to_dict(new)
    assert old.objective.options.experimental.diagonal_groups == 2


def test_each_renamed_key_is_named_in_a_warning():
    with pytest.warns(UserWarning, match=r"objective.diagonal_groups is now objective.experimental.diagonal_groups"):
        cfg.load(MANAGER, config_file="debug", overrides=["objective.diagonal_groups=1"])
    with pytest.warns(UserWarning, match=r"derivative.batched was removed"):
        cfg.load(MANAGER, config_file="debug", overrides=["derivative.batched=true"])


def test_grad_checkpointing_becomes_the_one_train_switch():
    raw = {"backbone": {"name": "tim-dit", "grad_checkpointing": True}, "train": {"activation_checkpointing": False}}
    with pytest.warns(UserWarning):
        assert apply_renames(raw) == {"backbone": {"name": "tim-dit"}, "train": {"activation_checkpointing": True}}
    raw = {"backbone": {"name": "tim-dit", "grad_checkpointing": False}, "train": {"activation_checkpointing": True}}
    with pytest.warns(UserWarning):
        assert apply_renames(raw)["train"] == {"activation_checkpointing": True}


def test_a_rename_touches_only_the_component_that_had_the_key():
    raw = {"objective": {"name": "fm", "diagonal_groups": 1}}
    assert apply_renames(raw) == {"objective": {"name": "fm", "diagonal_groups": 1}}
    with pytest.raises(ConfigError, match="unknown key objective.diagonal_groups"):
        cfg.resolve(raw, MANAGER)


def test_old_and_new_name_that_disagree_fail_with_one_line():
    with pytest.raises(ConfigError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg.load(MANAGER, config_file="debug",
                 overrides=["objective.diagonal_groups=1", "objective.experimental.diagonal_groups=2"])
    message = str(info.value)
    assert "\n" not in message
    assert "objective.diagonal_groups = 1 and objective.experimental.diagonal_groups = 2 disagree" in message


def test_every_rename_names_a_key_that_is_gone_and_a_key_that_exists():
    for rename in RENAMES:
        config = MANAGER.get(SLOTS[rename.slot], rename.component).config
        assert rename.key not in attrs.fields_dict(config)
        if rename.new is not None:
            section, *path = rename.new.split(".")
            assert _has(config if section == rename.slot else SECTIONS[section], path), rename.new


def _has(cls: type, path: list[str]) -> bool:
    for key in path:
        fields = attrs.fields_dict(attrs.resolve_types(cls))
        if key not in fields:
            return False
        cls = fields[key].type
    return True


def test_an_old_run_folder_resumes_samples_and_keeps_its_file(capsys, tmp_path, finished_run):
    """A run written before the renames (old names in config.toml and changes.jsonl) still trains on."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    stored = tomllib.loads((run / "config.toml").read_text())
    stored["objective"]["adaptive_eps"] = stored["objective"].pop("experimental")["adaptive_eps"]
    stored["derivative"]["batched"] = True
    (run / "config.toml").write_text(tomli_w.dumps(stored))
    (run / "changes.jsonl").write_text(json.dumps({"overrides": ["objective.diagonal_groups=1"]}) + "\n")
    before = (run / "config.toml").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["train", "--resume", str(run), "--no-progress", "train.steps=6"])
    out, err = capsys.readouterr()
    assert code == 0 and "trained 6 of 6 steps" in out, err
    assert (run / "config.toml").read_bytes() == before
    assert _load(config_file=str(run / "config.toml")).objective.options.experimental.adaptive_eps == 1e-5
