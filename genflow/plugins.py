"""The plugin manager: hook specs, built-ins, entry points, blocking, and the component registry."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable

import attrs
import pluggy

from genflow import hookspecs
from genflow.errors import GenflowError, allowed
from genflow.registry import KINDS, Component

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

#: Plugins that ship with genflow, registered before entry points (by module name, so the core
#: itself imports no plugin code).
BUILTIN_PLUGINS: dict[str, str] = {
    "genflow": "genflow.builtin",
    "genflow_fm": "genflow_fm.plugin",
    "genflow_tim": "genflow_tim.plugin",
}
ENTRY_POINT_GROUP = "genflow"
AUTOLOAD_ENV = "GENFLOW_DISABLE_PLUGIN_AUTOLOAD"


@attrs.frozen(kw_only=True)
class Registered:
    """A component with the name of the plugin that provides it."""

    component: Component
    plugin: str


class PluginManager:
    """genflow's plugin manager: loads plugins once and indexes their components by kind."""

    def __init__(self, *, blocked: Iterable[str] = (), autoload: bool | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.warnings: list[str] = []
        for name in blocked:
            self.pm.set_blocked(name)
        for name, module in BUILTIN_PLUGINS.items():
            self._register_module(name, module)
        if autoload is None:
            autoload = not os.environ.get(AUTOLOAD_ENV)
        if autoload:
            self._load_entry_points()
        self.pm.check_pending()
        self.components = self._collect()

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.pm.hook

    def _register_module(self, name: str, module_name: str) -> None:
        if self.pm.is_blocked(name) or self.pm.has_plugin(name):
            return
        self.pm.register(importlib.import_module(module_name), name=name)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self.pm.is_blocked(ep.name) or self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break the CLI
                self.warnings.append(
                    f"plugin '{ep.name}' ({ep.value}) failed to import and was skipped: "
                    f"{type(exc).__name__}: {exc} (block it with -p no:{ep.name})"
                )
                continue
            self.pm.register(plugin, name=ep.name)

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object after start-up (tests, notebooks) and re-index components."""
        self.pm.register(plugin, name=name)
        self.pm.check_pending()
        self.components = self._collect()

    def _collect(self) -> dict[str, dict[str, Registered]]:
        table: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        for kind, hook_name in KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                for component in impl.function() or ():
                    seen = table[kind].get(component.name)
                    if seen is not None:
                        raise GenflowError(
                            f"{kind} '{component.name}' is registered twice: by plugin "
                            f"'{seen.plugin}' and by plugin '{plugin_name}' (block one with -p no:NAME)"
                        )
                    table[kind][component.name] = Registered(component=component, plugin=plugin_name)
        return table

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; a clear error naming the registered ones if absent."""
        found = self.components[kind].get(name)
        if found is None:
            raise GenflowError(f"unknown {kind} '{name}'; registered: {allowed(self.components[kind])}")
        return found.component

    def plugin_names(self) -> list[str]:
        return sorted(n for n, plugin in self.pm.list_name_plugin() if plugin is not None)


def report_warnings(manager: PluginManager) -> None:
    for line in manager.warnings:
        print(f"genflow: warning: {line}", file=sys.stderr)
