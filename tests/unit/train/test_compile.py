"""``train.compile``: each block is compiled with ``compile_mode``, compiled steps equal eager ones."""

from __future__ import annotations

import pathlib

import pytest
import torch
from genflow_tim.dit import PRESETS

from genflow import config as cfg
from genflow.errors import ConfigError
from genflow.train.trainer import Trainer

DIT = ("data.name=shapes", "data.resolution=8", "objective.name=tim", "backbone.name=tim-dit", "backbone.preset=debug",
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


def test_each_block_is_compiled_with_the_mode(manager, tmp_path, eager_backend):
    trainer = _trainer(manager, tmp_path, "train.compile=true", "train.compile_mode=reduce-overhead")
    blocks = trainer.model.fsdp_units()
    assert blocks and all(_compiled(b) for b in blocks) and not _compiled(trainer.model)
    assert len(eager_backend) == len(blocks) and all(call["mode"] == "reduce-overhead" for call in eager_backend)


def test_tuning_adds_coordinate_descent_to_the_modes_options(manager, tmp_path, eager_backend):
    _trainer(manager, tmp_path / "a", "train.compile=true", "train.compile_mode=reduce-overhead",
             "train.compile_tuning=true")
    _trainer(manager, tmp_path / "b", "train.compile=true", "train.compile_tuning=true")
    blocks = PRESETS["debug"].depth
    tuned_cudagraphs = {"triton.cudagraphs": True, "coordinate_descent_tuning": True}
    tuned = {"coordinate_descent_tuning": True}
    assert [c["options"] for c in eager_backend] == [tuned_cudagraphs] * blocks + [tuned] * blocks
    assert all("mode" not in c for c in eager_backend)


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
    assert losses("train.compile=true", "train.compile_mode=reduce-overhead") == eager
    assert losses("train.compile=true") == eager


def test_the_training_loop_runs_static_compiled_graphs(manager, tmp_path, eager_backend):
    """``Trainer.run`` (FLOP count, steps, sample previews) trains through compiled blocks: one
    static graph per grad mode and batch shape (the one-sided DDE's pass has half the rows)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # no cached graphs (nor skip marks) from other tests
    counters.clear()
    trainer = _trainer(manager, tmp_path, "train.compile=true", "train.steps=3", "train.sample_every=2",
                       "sample.num=4", "derivative.name=dde", "derivative.stencil=one-sided",
                       "objective.diffusion_ratio=0.5")
    assert trainer.run() == 3
    assert counters["stats"]["unique_graphs"] == 2  # (grad, 8 rows), (no grad, 4 rows)
    assert counters["frames"]["ok"] == 2


def test_unknown_mode_is_a_config_error(manager):
    with pytest.raises(ConfigError, match="train.compile_mode"):
        cfg.load(manager, overrides=[*DIT, "train.compile_mode=fast"])
