"""Shared fixtures: a plugin manager, a temporary cache, small thread counts."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def manager():
    from genflow.plugins import PluginManager

    return PluginManager()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Built-in datasets prepare into a per-session cache, never the user's home."""
    monkeypatch.setenv("GENFLOW_CACHE", str(tmp_path_factory.getbasetemp() / "genflow-cache"))
