"""Config keys that moved or went away, read under their new names (docs/config.md, "Renamed keys").

A run folder's ``config.toml`` (and the overrides its resumes recorded) keeps the names it was
written with; :func:`apply_renames` maps them before the config is structured, so an old run
folder still resumes, samples and evaluates. A key is renamed only in the table of the component
that had it (``objective.diagonal_groups`` of ``tim``, not of another objective). Each renamed key
is reported once, as a ``genflow:`` warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import attrs

from genflow.errors import ConfigError


@attrs.frozen(kw_only=True)
class Rename:
    """``[slot] key`` of ``component`` is now the dotted ``new`` (from the config's root); ``None``:
    the key was removed and its value is dropped."""

    slot: str
    component: str
    key: str
    new: str | None
    why: str = ""


#: Every rename, oldest first.
RENAMES: tuple[Rename, ...] = (
    *(Rename(slot="objective", component="tim", key=key, new=f"objective.experimental.{key}")
      for key in ("diagonal_groups", "adaptive_eps", "guidance_target_variant")),
    Rename(slot="derivative", component="dde", key="batched", new=None,
           why="the DDE always runs its two passes as one batch"),
    Rename(slot="backbone", component="tim-dit", key="grad_checkpointing", new="train.activation_checkpointing",
           why="one switch for every backbone"),
)


def apply_renames(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (unstructured settings, changed in place and returned) with every old key under its new name."""
    for rename, value in list(_found(raw)):
        table = raw[rename.slot]
        del table[rename.key]
        old = f"{rename.slot}.{rename.key}"
        if rename.new is not None:
            _put(raw, rename.new, value, old)
        what = f"is now {rename.new}" if rename.new else "was removed"
        warnings.warn(f"genflow: config key {old} {what}{f' ({rename.why})' if rename.why else ''}; "
                      "read accordingly (docs/config.md)", stacklevel=2)
    return raw


def _found(raw: dict[str, Any]) -> Iterator[tuple[Rename, Any]]:
    for rename in RENAMES:
        table = raw.get(rename.slot)
        if isinstance(table, dict) and table.get("name") == rename.component and rename.key in table:
            yield rename, table[rename.key]


def _put(raw: dict[str, Any], dotted: str, value: Any, old: str) -> None:
    """Set ``dotted`` to ``value``; a value already there must agree (switches: either one on is on)."""
    *parents, key = dotted.split(".")
    node = raw
    for parent in parents:
        child = node.setdefault(parent, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{old} is now {dotted}, but {parent} is not a table here")
        node = child
    if key not in node or node[key] == value:
        node[key] = value
    elif isinstance(value, bool) and isinstance(node[key], bool):
        node[key] = node[key] or value
    else:
        raise ConfigError(f"{old} = {value!r} and {dotted} = {node[key]!r} disagree; {old} is now {dotted}: "
                          f"keep {dotted} only")
