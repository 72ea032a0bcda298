"""Every registered component of every kind passes its contract (new plugins are tested automatically)."""

from __future__ import annotations

import pytest

from genflow.plugins import PluginManager
from genflow.testing import CHECKS

_MANAGER = PluginManager()
CASES = [(kind, name) for kind in CHECKS for name in _MANAGER.names(kind)]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_contract(kind, name):
    CHECKS[kind](_MANAGER, name)


def test_every_kind_has_a_component():
    for kind in CHECKS:
        assert _MANAGER.names(kind), f"no {kind} is registered"
