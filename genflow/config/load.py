"""Resolve a run config: defaults < ``--config`` file < selectors < dotted overrides.

A slot's settings are a TOML table with a ``name`` key (the registered component) and that
component's options, e.g. ``[objective] name = "tim"  diffusion_ratio = 0.4``. Changing a slot's
name with a selector drops the settings the file gave that slot, and those of the slots that follow
it (``DEPENDENTS``: the derivative and the sampler follow the objective, the backbone the data) unless they are
selected too.
"""

from __future__ import annotations

import copy
import importlib.resources
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import tomli_w
import tomllib

from genflow.config.convert import structure, unstructure
from genflow.config.renames import apply_renames
from genflow.config.schema import OPTIONAL_SLOTS, SECTIONS, SLOT_DEFAULTS, SLOTS, RunConfig, Selection
from genflow.errors import ConfigError, allowed
from genflow.plugins import PluginManager

PRESET_PACKAGE = "genflow_configs"

#: Config files larger than this are refused before they are read (the largest preset is ~2 KiB).
MAX_CONFIG_BYTES = 1 << 20
#: Tables and lists nested deeper than this are refused (a run config nests 3 levels at most).
MAX_DEPTH = 16

#: Slots whose default follows another slot's component (``Component.defaults``).
DEPENDENTS: dict[str, tuple[str, ...]] = {"objective": ("derivative", "sampler"), "data": ("backbone",)}


def preset_names() -> list[str]:
    """Names of the TOML presets shipped in ``configs/``."""
    files = importlib.resources.files(PRESET_PACKAGE)
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def read_config_file(name_or_path: str) -> dict[str, Any]:
    """Read a TOML file, or a shipped preset by name (``demo``, ``debug``, ...): UTF-8, at most
    ``MAX_CONFIG_BYTES`` and ``MAX_DEPTH`` levels of nesting."""
    if not name_or_path.strip():
        raise ConfigError(f"--config {name_or_path!r}: empty; give a TOML file or a preset: {allowed(preset_names())}")
    path = pathlib.Path(name_or_path)
    if not path.exists() and not name_or_path.endswith(".toml") and "/" not in name_or_path:
        preset = importlib.resources.files(PRESET_PACKAGE) / f"{name_or_path}.toml"
        if not preset.is_file():
            raise ConfigError(
                f"config '{name_or_path}' is neither a file nor a preset; presets: {allowed(preset_names())}"
            )
        data = preset.read_bytes()
    elif not path.is_file():
        raise ConfigError(f"config file '{name_or_path}' does not exist (or is not a file)")
    else:
        data = _read_limited(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{name_or_path}' is not UTF-8 text (byte {exc.start}: "
                          f"{data[exc.start:exc.start + 1]!r}); TOML files are UTF-8") from None
    return _parse_toml(text, f"config file '{name_or_path}'")


def _read_limited(path: pathlib.Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file '{path}' is larger than {MAX_CONFIG_BYTES} bytes; a run config is a few KiB")
    return data


def _parse_toml(text: str, what: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} is not valid TOML: {exc}") from None
    except RecursionError:
        data = None
    if data is None or _depth(data) > MAX_DEPTH:
        raise ConfigError(f"{what} nests tables or lists more than {MAX_DEPTH} levels deep")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of TOML data (iterative, so any depth is measured safely)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_value(text: str) -> Any:
    """A TOML literal (``false``, ``1e-4``, ``[1, 2]``, ``"x"``), or the bare text as a string."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        value = None
    if value is None or _depth(value) > MAX_DEPTH:
        raise ConfigError(f"override value '{text[:40]}...' nests lists or tables more than {MAX_DEPTH} levels deep")
    return value


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (``["a", "b", "c"]``, parsed value)."""
    key, sep, value = item.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(k.strip() for k in keys) or len(keys) > MAX_DEPTH:
        raise ConfigError(f"override '{item}' must look like section.key=value (e.g. train.steps=100)")
    return [k.strip() for k in keys], parse_value(value.strip())


def _set_dotted(raw: dict[str, Any], keys: list[str], value: Any, item: str) -> None:
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{item}': {'.'.join(keys[: depth + 1])} is not a table")
        node = child
    node[keys[-1]] = value


def _check_sections(raw: Mapping[str, Any]) -> None:
    known = set(SLOTS) | set(SECTIONS)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}'; allowed: {allowed(known)}")


def merge_raw(
    file_data: Mapping[str, Any],
    selectors: Mapping[str, str | None],
    overrides: Sequence[str],
) -> dict[str, Any]:
    """Apply selectors then overrides to the file's data; returns raw (unstructured) settings, with
    keys that moved under their new names (``genflow.config.renames``)."""
    raw: dict[str, Any] = copy.deepcopy(dict(file_data))
    for slot, name in selectors.items():
        if name is None:
            continue
        current = raw.get(slot)
        if not isinstance(current, dict) or current.get("name") != name:
            raw[slot] = {"name": name}
            # The file's choice for a dependent slot was made for the old component: let the new
            # one's ``defaults`` choose (e.g. --objective fm brings its own sampler).
            for dependent in DEPENDENTS.get(slot, ()):
                if selectors.get(dependent) is None:
                    raw.pop(dependent, None)
    for item in overrides:
        keys, value = parse_override(item)
        _set_dotted(raw, keys, value, item)
    _check_sections(raw)
    return apply_renames(raw)


def _slot_name(raw: dict[str, Any], slot: str, suggested: Mapping[str, str], manager: PluginManager) -> str | None:
    """The slot's component name: the config's, else another component's suggestion, else the
    core's default; None for an optional slot that nothing names."""
    table = raw.get(slot, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{slot}: expected a table of settings, got {table!r}")
    name = table.get("name", suggested.get(slot, SLOT_DEFAULTS.get(slot)))
    if name is None:
        if slot in OPTIONAL_SLOTS and not table:
            return None
        kind = SLOTS[slot]
        raise ConfigError(f"{slot}.name: not set; choose one of the registered {kind}s: "
                          f"{allowed(manager.names(kind))} (e.g. --{slot} NAME, or --config demo)")
    if not isinstance(name, str):
        raise ConfigError(f"{slot}.name: expected a string, got {name!r}")
    raw[slot] = {**table, "name": name}
    return name


def resolve(raw: Mapping[str, Any], manager: PluginManager) -> RunConfig:
    """Structure raw settings into a ``RunConfig``: every slot's name is looked up in the registry
    (unset ones follow the ``defaults`` of the components chosen before them)."""
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    _check_sections(data)
    suggested: dict[str, str] = {}
    fields: dict[str, Any] = {}
    for slot, kind in SLOTS.items():
        name = _slot_name(data, slot, suggested, manager)
        if name is None:
            fields[slot] = None
            continue
        if name not in manager.components[kind]:
            raise ConfigError(f"{slot}.name: unknown {kind} '{name}'; registered: {allowed(manager.names(kind))}")
        component = manager.get(kind, name)
        options = {k: v for k, v in data[slot].items() if k != "name"}
        fields[slot] = Selection(name=name, options=structure(options, component.config, slot))
        for other, value in component.defaults.items():
            suggested.setdefault(other, value)
    for section, cls in SECTIONS.items():
        fields[section] = structure(data.get(section, {}), cls, section)
    return RunConfig(**fields)


def to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain data of a resolved config (slots as ``{name, **options}``)."""
    out: dict[str, Any] = {}
    for slot in SLOTS:
        selection = config.chosen(slot)
        if selection is None:
            continue
        out[slot] = {"name": selection.name, **unstructure(selection.options)}
    for section in SECTIONS:
        out[section] = unstructure(getattr(config, section))
    return out


def to_toml(config: RunConfig) -> str:
    return tomli_w.dumps(to_dict(config))


def load(
    manager: PluginManager,
    *,
    config_file: str | None = None,
    selectors: Mapping[str, str | None] | None = None,
    overrides: Sequence[str] = (),
) -> RunConfig:
    """The whole precedence chain in one call."""
    file_data = read_config_file(config_file) if config_file is not None else {}
    raw = merge_raw(file_data, selectors or {}, overrides)
    config = resolve(raw, manager)
    manager.hook.genflow_configure(config=config)
    return config
