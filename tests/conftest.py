"""Shared fixtures: a plugin manager, a temporary cache, small thread counts, a finished debug run."""

from __future__ import annotations

import pathlib

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def manager():
    from genflow.plugins import PluginManager

    return PluginManager()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> pathlib.Path:
    """A ``debug`` run trained for 4 steps with checkpoints at 2 and 4; read-only (copy it to change it)."""
    from genflow.cli import main

    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "--config", "debug", "--run-dir", str(run), "--no-progress", "train.steps=4",
                 "train.checkpoint_every=2"]) == 0
    return run


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Built-in datasets prepare into a per-session cache, never the user's home."""
    monkeypatch.setenv("GENFLOW_CACHE", str(tmp_path_factory.getbasetemp() / "genflow-cache"))
