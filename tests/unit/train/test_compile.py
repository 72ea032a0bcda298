"""``train.compile``: what ``compile_scope`` compiles, that compiled steps equal eager ones, bad settings."""

from __future__ import annotations

import pathlib

import pytest
import torch

from genflow import config as cfg
from genflow.errors import ConfigError
from genflow.train.trainer import Trainer, compile_backbone

DIT = ("data.name=shapes", "data.resolution=8", "backbone.name=tim-dit", "backbone.preset=debug",
       "train.batch_size=8", "train.steps=2")


@pytest.fixture
def eager_backend(monkeypatch):
    """``Module.compile`` through dynamo's ``eager`` backend (graph capture, no code generation:
    fast, and the numbers equal eager ones), recording each call's keyword arguments."""
    calls: list[dict] = []
    original = torch.nn.Module.compile

    def compile_eager(self, *args, **kwargs):
        calls.append(dict(kwargs))
        original(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eager)
    return calls


def _trainer(manager, tmp_path: pathlib.Path, *overrides: str) -> Trainer:
    config = cfg.load(manager, overrides=[*DIT, *overrides])
    return Trainer(config, manager, tmp_path, progress=False)


def _compiled(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


@pytest.mark.parametrize("scope", ["blocks", "model"])
def test_scope_compiles_each_block_or_the_whole_backbone(manager, tmp_path, eager_backend, scope):
    trainer = _trainer(manager, tmp_path, "train.compile=true", f"train.compile_scope={scope}",
                       "train.compile_mode=reduce-overhead")
    blocks = trainer.model.fsdp_units()
    assert blocks and all(_compiled(b) == (scope == "blocks") for b in blocks)
    assert _compiled(trainer.model) == (scope == "model")
    assert eager_backend and all(call["mode"] == "reduce-overhead" for call in eager_backend)


def test_compiled_steps_equal_eager_steps(manager, tmp_path, eager_backend):
    def losses(*overrides: str) -> list[float]:
        trainer = _trainer(manager, tmp_path / "-".join(overrides or ("eager",)), *overrides)
        batch = trainer.components.dataset.reference(8, seed=0)
        generator = torch.Generator()
        out = []
        for _ in range(2):
            out.append(float(trainer.train_step(batch, generator)["loss"]))
            trainer.step += 1
        return out

    eager = losses()
    assert losses("train.compile=true", "train.compile_scope=model", "train.compile_mode=reduce-overhead") == eager
    assert losses("train.compile=true") == eager


def test_model_scope_needs_one_process(manager):
    config = cfg.load(manager, overrides=[*DIT, "train.compile=true", "train.compile_scope=model"])
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="compile_scope = 'model' needs a single process.*use 'blocks'"):
        compile_backbone(model, config.train, distributed=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(("override", "message"), [
    ("train.compile_scope=layers", "train.compile_scope"),
    ("train.compile_mode=fast", "train.compile_mode"),
])
def test_unknown_scope_or_mode_is_a_config_error(manager, override, message):
    with pytest.raises(ConfigError, match=message):
        cfg.load(manager, overrides=[*DIT, override])
