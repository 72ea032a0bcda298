"""The guide's plugin code (docs/plugins.md, section 2) runs as written, in the fast tier: its files are
written to a folder, its plugin module is registered in-process, and genflow's contract checks pass
over its objective and its first-order derivative provider; the objective takes a few training steps with each
provider. (Installing it with pip and the guide's commands: tests/e2e/test_third_party_plugin.py.)"""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from genflow.interfaces import Batch
from genflow.plugins import PluginManager
from genflow.testing import CHECKS, build_backbone_for_tests
from tests.unit.core.test_examples_public_api import violations
from tests.unit.core.test_plugin_guide import GUIDE, guide_files


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    root = tmp_path_factory.mktemp("guide")
    for relative, text in guide_files(GUIDE.read_text(encoding="utf-8")).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    sys.path.insert(0, str(root / "myobjective" / "src"))
    try:
        plugin = importlib.import_module("myobjective.plugin")
        manager = PluginManager(autoload=False)
        manager.register(plugin, name="myobjective")
        yield manager
    finally:
        sys.path.remove(str(root / "myobjective" / "src"))
        for name in [m for m in sys.modules if m == "myobjective" or m.startswith("myobjective.")]:
            del sys.modules[name]


def test_the_guide_code_uses_only_the_public_api():
    for path, text in guide_files(GUIDE.read_text(encoding="utf-8")).items():
        if path.endswith(".py"):
            assert violations(text, {"myobjective", "mytext"}) == [], path


@pytest.mark.parametrize(("kind", "name"), [("objective", "myobjective"), ("derivative", "myfd")])
def test_contract_checks_pass(manager, kind, name):
    CHECKS[kind](manager, name)


def test_the_derivative_is_first_order_and_reuses_the_main_pass(manager):
    derivative = manager.get("derivative", "myfd").build(manager.get("derivative", "myfd").config())
    assert derivative.order == 1 and derivative.uses_output


@pytest.mark.parametrize("provider", ["myfd", "dde", "jvp"])
def test_the_objective_trains_with_every_provider(manager, provider):
    component = manager.get("objective", "myobjective")
    model, spec = build_backbone_for_tests(manager, "mlp")
    path = manager.get("path", "linear").build(manager.get("path", "linear").config())
    derivative = manager.get("derivative", provider).build(manager.get("derivative", provider).config())
    objective = component.build(component.config(), path=path, derivative=derivative, spec=spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, *spec.shape, generator=generator) * 0.5
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        optimizer.zero_grad()
        out = objective.loss(model, Batch(x=x), generator=generator)
        out.loss.backward()
        optimizer.step()
        assert torch.isfinite(out.loss) and out.logs["mse"] >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
