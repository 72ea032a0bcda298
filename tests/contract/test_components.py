"""Every registered component of every kind passes its contract (new plugins are tested automatically)."""

from __future__ import annotations

import pytest

from genflow.plugins import PluginManager
from genflow.testing import CHECKS, build_derivative, check_derivative

_MANAGER = PluginManager()
CASES = [(kind, name) for kind in CHECKS for name in _MANAGER.names(kind)]


@pytest.mark.parametrize(("kind", "name"), CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_contract(kind, name):
    CHECKS[kind](_MANAGER, name)


def test_every_kind_has_a_component():
    for kind in CHECKS:
        assert _MANAGER.names(kind), f"no {kind} is registered"


#: Settings of registered providers whose accuracy order differs from their default's: each is held to
#: the order it declares (``Derivative.order``), through the same check.
DERIVATIVE_VARIANTS = [("dde", {"stencil": "one-sided"}, 1)]


@pytest.mark.parametrize(("name", "overrides", "order"), DERIVATIVE_VARIANTS,
                         ids=[f"{n}:{','.join(f'{k}={v}' for k, v in o.items())}" for n, o, _ in DERIVATIVE_VARIANTS])
def test_derivative_variants(name, overrides, order):
    assert build_derivative(_MANAGER, name, overrides).order == order
    check_derivative(_MANAGER, name, overrides=overrides)
