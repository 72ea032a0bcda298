"""Size of the config surface: keys ``genflow config`` prints, keys the schema defines, keys no preset sets.

A key is a leaf of the config: ``train.lr``, ``objective.adaptive``, ``objective.experimental.diagonal_groups``.
The schema's keys are those of ``[train]`` and ``[sample]`` plus every field of every registered
component's config (one key per component: ``backbone.unet.channels`` and ``backbone.tim-dit.depth``
are two). A key "set by no preset" appears in none of ``configs/*.toml``.

    python benchmarks/config_keys.py            # the counts
    python benchmarks/config_keys.py --list     # and the keys no preset sets
"""

from __future__ import annotations

import argparse
import importlib.resources
from collections.abc import Iterator, Mapping
from typing import Any

import _paths  # noqa: F401  (genflow importable from a bare checkout)
import attrs
import tomllib

from genflow.config import load, to_dict
from genflow.config.load import PRESET_PACKAGE
from genflow.config.schema import SECTIONS, SLOTS
from genflow.plugins import PluginManager

Key = tuple[str, ...]
PRINTED_FOR = ("demo", "shapes-science")


def leaves(tree: Mapping[str, Any], prefix: Key = ()) -> Iterator[Key]:
    """Dotted paths of the non-table values of a TOML tree."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def fields(cls: type, prefix: Key = ()) -> Iterator[Key]:
    """Dotted field paths of an attrs config class (nested attrs classes are tables)."""
    for field in attrs.fields(attrs.resolve_types(cls)):
        if isinstance(field.type, type) and attrs.has(field.type):
            yield from fields(field.type, (*prefix, field.name))
        else:
            yield (*prefix, field.name)


def schema_keys(manager: PluginManager) -> set[Key]:
    """``(section or slot, component name or "", *field path)`` of every key the schema defines."""
    keys = {(section, "", *key) for section, cls in SECTIONS.items() for key in fields(cls)}
    for slot, kind in SLOTS.items():
        for name, registered in manager.components[kind].items():
            keys |= {(slot, name, *key) for key in fields(registered.component.config)}
    return keys


def preset_keys() -> set[Key]:
    """The keys the shipped presets set, in the form of :func:`schema_keys` ("" for an unnamed slot)."""
    found: set[Key] = set()
    for file in importlib.resources.files(PRESET_PACKAGE).iterdir():
        if not file.name.endswith(".toml"):
            continue
        for section, table in tomllib.loads(file.read_text(encoding="utf-8")).items():
            name = str(table.get("name", "")) if section in SLOTS else ""
            found |= {(section, name, *key) for key in leaves(table) if key != ("name",)}
    return found


def unset_keys(schema: set[Key], presets: set[Key]) -> list[Key]:
    """Schema keys that no preset sets (a preset's slot table without a name counts for every component)."""
    unnamed = {(key[0], *key[2:]) for key in presets if key[1] == ""}
    return sorted(k for k in schema if k not in presets and (k[0], *k[2:]) not in unnamed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="also list the keys no preset sets")
    args = parser.parse_args()
    manager = PluginManager()
    for preset in PRINTED_FOR:
        printed = list(leaves(to_dict(load(manager, config_file=preset))))
        print(f"genflow config --config {preset}: {len(printed)} keys")
    schema = schema_keys(manager)
    unset = unset_keys(schema, preset_keys())
    print(f"schema: {len(schema)} keys ({sum(1 for k in schema if k[0] == 'train')} in [train])")
    print(f"set by no preset: {len(unset)}")
    if args.list:
        print("\n".join("  " + ".".join(part for part in key if part) for key in unset))


if __name__ == "__main__":
    main()
