"""Config resolution: precedence, selectors, overrides as TOML literals, one-line errors."""

from __future__ import annotations

import pytest
import tomli_w
import tomllib

from genflow import config as cfg
from genflow.config.convert import structure, unstructure
from genflow.config.load import merge_raw, parse_override, parse_value
from genflow.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "value"),
    [("false", False), ("true", True), ("1e-4", 1e-4), ("3", 3), ("[1, 2]", [1, 2]), ('"x y"', "x y"),
     ("shapes", "shapes"), ("0.5", 0.5)],
)
def test_override_values_parse_as_toml_literals(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_override_keys_split_on_dots():
    assert parse_override("objective.diffusion_ratio=0.4") == (["objective", "diffusion_ratio"], 0.4)
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.steps")


def test_precedence_defaults_file_selector_override(manager, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nsteps = 7\nlr = 0.5\n[objective]\nname = "fm"\np_mean = 0.3\n')
    config = cfg.load(manager, config_file=str(path), overrides=["train.lr=1e-4"])
    assert config.train.steps == 7 and config.train.lr == 1e-4  # file < override
    assert config.objective.name == "fm" and config.objective.options.p_mean == 0.3
    assert config.train.batch_size == cfg.TrainConfig().batch_size  # default kept


def test_selector_changing_a_slot_drops_its_file_settings(manager, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[objective]\nname = "fm"\np_mean = 0.3\n')
    same = cfg.load(manager, config_file=str(path), selectors={"objective": "fm"})
    assert same.objective.options.p_mean == 0.3
    other = cfg.load(manager, config_file=str(path), selectors={"objective": "tim"})
    assert other.objective.name == "tim"
    assert other.objective.options == manager.get("objective", "tim").config()


def test_unset_slots_follow_component_defaults(manager):
    tim = cfg.load(manager, selectors={"objective": "tim"})
    fm = cfg.load(manager, selectors={"objective": "fm"})
    assert tim.sampler.name == "transition" and fm.sampler.name == "euler"


def test_round_trip_through_toml(manager, tmp_path):
    config = cfg.load(manager, selectors={"objective": "tim"}, overrides=["train.ema_decay=[0.99, 0.999]"])
    path = tmp_path / "resolved.toml"
    path.write_text(cfg.to_toml(config))
    assert cfg.resolve(cfg.read_config_file(str(path)), manager) == config


def test_every_component_default_config_round_trips_through_toml(manager):
    """Every registered component's default options serialise to TOML (no None: TOML has no null)
    and read back equal, so every run's config.toml can be written and resumed."""
    for slot, kind in cfg.SLOTS.items():
        for name in manager.names(kind):
            component = manager.get(kind, name)
            if component.config is None:
                continue
            options = component.config()
            text = tomli_w.dumps({slot: unstructure(options)})
            assert structure(tomllib.loads(text)[slot], component.config, slot) == options, f"{kind} {name}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["objective.sigma_dat=1"], "unknown key objective.sigma_dat; allowed keys here: "),
        (["train.steps=abc"], "train.steps: expected an integer, got 'abc'"),
        (["train.steps=1.5"], "train.steps: expected an integer"),
        (["train.compile=1"], "train.compile: expected true or false"),
        (["train.precision=fp8"], "train.precision: got 'fp8'; allowed: 'fp32', 'bf16'"),
        (["train.grad_clip=0"], "train.grad_clip = 0.0: expected a number > 0"),
        (["objective.name=nope"], "objective.name: unknown objective 'nope'; registered: fm, tim"),
        (["nosuch.key=1"], "unknown config section 'nosuch'"),
        (["train=1"], "train: expected a table"),
    ],
)
def test_bad_values_name_the_path_and_the_allowed(manager, overrides, message):
    with pytest.raises(ConfigError) as info:
        cfg.load(manager, selectors={"objective": "fm"}, overrides=overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_file_errors(manager, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.read_config_file(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 1")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        cfg.read_config_file(str(bad))
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        cfg.read_config_file("no-such-preset")


def test_merge_keeps_the_input_untouched():
    data = {"objective": {"name": "fm", "p_mean": 0.1}}
    merge_raw(data, {"objective": "tim"}, ["objective.p_mean=0.2"])
    assert data == {"objective": {"name": "fm", "p_mean": 0.1}}


def test_changing_the_objective_lets_the_sampler_follow(manager, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[objective]\nname = "tim"\n[sampler]\nname = "transition"\n[data]\nname = "shapes"\n'
                    '[backbone]\nname = "unet"\n')
    assert cfg.load(manager, config_file=str(path), selectors={"objective": "fm"}).sampler.name == "euler"
    explicit = cfg.load(manager, config_file=str(path), selectors={"objective": "fm", "sampler": "heun"})
    assert explicit.sampler.name == "heun"
    assert cfg.load(manager, config_file=str(path), selectors={"data": "toy2d"}).backbone.name == "mlp"
    assert cfg.load(manager, config_file=str(path), selectors={"objective": "tim"}).sampler.name == "transition"
