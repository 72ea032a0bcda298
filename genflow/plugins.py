"""The plugin manager: hook specs, built-ins, entry points, blocking, and the component registry."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from genflow import hookspecs
from genflow.errors import GenflowError, allowed
from genflow.registry import KINDS, Component

hookimpl = pluggy.HookimplMarker(hookspecs.PROJECT)

#: Plugins that ship with genflow, registered before entry points (by module name, so the core
#: itself imports no plugin code).
BUILTIN_PLUGINS: dict[str, str] = {
    "genflow": "genflow.components.builtin",
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
                self._warn(ep.name, f"({ep.value}) failed to import and was skipped", exc)
                continue
            try:
                self.pm.register(plugin, name=ep.name)  # checks hook arguments against the specs
                self.pm.check_pending()  # a hook name genflow does not define (e.g. a typo) fails here
            except (pluggy.PluginValidationError, ValueError) as exc:  # ValueError: module registered twice
                if isinstance(exc, pluggy.PluginValidationError) and exc.plugin is not plugin:
                    raise  # another plugin's fault (only built-ins are registered unchecked before this one)
                if self.pm.has_plugin(ep.name):
                    self.pm.unregister(name=ep.name)
                self._warn(ep.name, f"({ep.value}) could not be registered and was skipped", exc)

    def _warn(self, plugin_name: str, what: str, exc: BaseException) -> None:
        detail = " ".join(str(exc).split())  # one line, whatever the exception's message looks like
        line = f"plugin '{plugin_name}' {what}: {type(exc).__name__}: {detail} (block it with -p no:{plugin_name})"
        if line not in self.warnings:
            self.warnings.append(line)

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object after start-up (tests, notebooks) and re-index components."""
        self.pm.register(plugin, name=name)
        self.pm.check_pending()
        self.components = self._collect()

    def _collect(self) -> dict[str, dict[str, Registered]]:
        table: dict[str, dict[str, Registered]] = {kind: {} for kind in KINDS}
        for kind, hook_name in KINDS.items():
            impls = getattr(self.pm.hook, hook_name).get_hookimpls()
            for impl in impls:
                plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                others = [other.plugin for other in impls if other.plugin is not impl.plugin]
                only = self.pm.subset_hook_caller(hook_name, remove_plugins=others)  # this plugin's hook alone
                for component in self._registrations(only, hook_name, plugin_name):
                    seen = table[kind].get(component.name)
                    if seen is not None:
                        raise GenflowError(
                            f"{kind} '{component.name}' is registered twice: by plugin "
                            f"'{seen.plugin}' and by plugin '{plugin_name}' (block one with -p no:NAME)"
                        )
                    table[kind][component.name] = Registered(component=component, plugin=plugin_name)
        return table

    def _registrations(self, caller: pluggy.HookCaller, hook_name: str, plugin_name: str) -> list[Component]:
        """The components one plugin's registration hook returns (``caller``: that hook of that plugin
        alone); a hook that raises (e.g. a lazy import of a missing dependency) or returns something
        else is reported and contributes nothing."""
        try:
            returned: list[Any] = caller()
            components = [item for result in returned for item in (result or ())]
        except Exception as exc:  # a broken third-party plugin must not break the CLI
            self._warn(plugin_name, f"failed in {hook_name} and its components were skipped", exc)
            return []
        wrong = [c for c in components if not isinstance(c, Component)]
        if wrong:
            error = TypeError(f"expected a list of genflow.registry.Component, got {wrong[0]!r}")
            self._warn(plugin_name, f"returned something else from {hook_name}; its components were skipped", error)
            return []
        return components

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
