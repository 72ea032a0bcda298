"""Plugin discovery: entry points, blocking, duplicates, broken plugins."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest

from genflow import hookimpl
from genflow.errors import GenflowError
from genflow.plugins import AUTOLOAD_ENV, PluginManager
from genflow.registry import Component


def _plugin_module(name: str, objective: str) -> types.ModuleType:
    """A throwaway plugin module registering one objective (reusing fm's implementation)."""
    module = types.ModuleType(name)

    @hookimpl
    def genflow_objectives():
        from genflow_fm.objective import FlowMatching, FlowMatchingConfig

        return [Component(name=objective, config=FlowMatchingConfig,
                          build=lambda config, *, path, derivative, spec: FlowMatching(config, path=path, spec=spec))]

    module.genflow_objectives = genflow_objectives
    return module


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Install fake distributions' entry points in the group ``genflow``."""
    added: list[importlib.metadata.EntryPoint] = []
    real = importlib.metadata.entry_points

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == "genflow":
            found += added
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)

    def add(name: str, module: types.ModuleType) -> None:
        monkeypatch.setitem(sys.modules, module.__name__, module)
        added.append(importlib.metadata.EntryPoint(name=name, value=module.__name__, group="genflow"))

    return add


def test_entry_point_plugin_is_discovered(fake_entry_points):
    fake_entry_points("thirdparty", _plugin_module("thirdparty_mod", "myobjective"))
    manager = PluginManager()
    assert "myobjective" in manager.names("objective")
    assert manager.components["objective"]["myobjective"].plugin == "thirdparty"


def test_blocking_by_name(fake_entry_points):
    fake_entry_points("thirdparty", _plugin_module("thirdparty_mod", "myobjective"))
    manager = PluginManager(blocked=["thirdparty", "genflow_tim"])
    assert "myobjective" not in manager.names("objective")
    assert manager.names("objective") == ["fm"]


def test_autoload_can_be_disabled(fake_entry_points, monkeypatch):
    fake_entry_points("thirdparty", _plugin_module("thirdparty_mod", "myobjective"))
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    assert "myobjective" not in PluginManager().names("objective")


def test_duplicate_name_is_an_error_naming_both_plugins(fake_entry_points):
    fake_entry_points("copycat", _plugin_module("copycat_mod", "tim"))
    with pytest.raises(GenflowError, match="objective 'tim' is registered twice: by plugin 'genflow_tim' and by "
                                           "plugin 'copycat'"):
        PluginManager()


def test_plugin_that_fails_to_import_is_reported_and_skipped(fake_entry_points):
    broken = types.ModuleType("broken_mod")
    fake_entry_points("broken", broken)
    del sys.modules["broken_mod"]  # importing it now fails
    manager = PluginManager()
    assert any("plugin 'broken'" in w and "failed to import" in w for w in manager.warnings)
    assert "tim" in manager.names("objective")


def test_unknown_component_lists_the_registered(manager):
    with pytest.raises(GenflowError, match="unknown sampler 'rk45'; registered: euler, heun, transition"):
        manager.get("sampler", "rk45")


def test_a_registration_hook_that_raises_skips_only_its_plugin(fake_entry_points):
    """Each plugin's registration hook is called alone (pluggy's subset hook caller): one that raises
    or returns something else loses its own components, not the other plugins'."""
    raising, wrong = types.ModuleType("raising_mod"), types.ModuleType("wrong_mod")

    @hookimpl
    def genflow_objectives():
        raise ImportError("no module named 'missing_dependency'")

    @hookimpl
    def genflow_samplers():
        return ["not a component"]

    raising.genflow_objectives, wrong.genflow_samplers = genflow_objectives, genflow_samplers
    fake_entry_points("raising", raising)
    fake_entry_points("wrong", wrong)
    fake_entry_points("thirdparty", _plugin_module("thirdparty_mod", "myobjective"))
    manager = PluginManager()
    assert {"fm", "tim", "myobjective"} <= set(manager.names("objective"))
    assert {"euler", "heun", "transition"} <= set(manager.names("sampler"))
    assert any("plugin 'raising' failed in genflow_objectives" in w and "missing_dependency" in w
               for w in manager.warnings)
    assert any("plugin 'wrong' returned something else from genflow_samplers" in w for w in manager.warnings)


def test_a_factory_that_builds_the_wrong_kind_fails_in_one_line():
    from genflow import config as cfg
    from genflow.components.build import build_components

    plugin = types.ModuleType("wrong_path_mod")

    @hookimpl
    def genflow_paths():
        return [Component(name="not-a-path", build=lambda config: 42)]

    plugin.genflow_paths = genflow_paths
    manager = PluginManager(autoload=False)
    manager.register(plugin, name="wrong_path")
    config = cfg.load(manager, config_file="debug", selectors={"path": "not-a-path"})
    with pytest.raises(GenflowError, match=r"^path 'not-a-path': its build returned int, not a ProbabilityPath$"):
        build_components(config, manager)
