"""The public API (``genflow.api``) does not change by accident: every public name and signature is
snapshotted in ``api_snapshot.json``; one that disappears or changes fails this test unless
CHANGELOG.md's "## Unreleased" section names it in backticks (``module.Name``, ``Name`` or
``Name.member``). Refresh the snapshot with ``python -m genflow.api > tests/unit/core/api_snapshot.json``.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from genflow import api

HERE = pathlib.Path(__file__).resolve().parent
SNAPSHOT = HERE / "api_snapshot.json"
CHANGELOG = HERE.parents[2] / "CHANGELOG.md"
REFRESH = "python -m genflow.api > tests/unit/core/api_snapshot.json"


def unreleased(changelog: str) -> str:
    """The text of the ``## Unreleased`` section ('' when there is none)."""
    match = re.search(r"^## Unreleased\s*$(.*?)(?=^## |\Z)", changelog, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def documented(key: str, notes: str) -> bool:
    """Whether ``notes`` names ``key`` (``module.Name.member``) or its public name in backticks."""
    for module, names in api.PUBLIC.items():
        for name in names:
            full = f"{module}.{name}"
            if key == full or key.startswith(full + "."):
                member = key[len(full):]
                spellings = {key, full, name, name + member}
                return any(f"`{s}`" in notes for s in spellings)
    return f"`{key}`" in notes


def undocumented_changes(recorded: dict[str, str], current: dict[str, str], notes: str) -> list[str]:
    """Recorded names that are gone or changed and that ``notes`` does not name."""
    changed = [k for k, v in recorded.items() if current.get(k) != v]
    return [k for k in changed if not documented(k, notes)]


def test_public_names_and_signatures_match_the_snapshot_or_the_changelog():
    recorded = json.loads(SNAPSHOT.read_text())
    current = api.snapshot()
    notes = unreleased(CHANGELOG.read_text()) if CHANGELOG.exists() else ""
    missing = undocumented_changes(recorded, current, notes)
    assert not missing, (
        "public API changed without a CHANGELOG.md entry: "
        + "; ".join(f"{k}: {recorded[k]!r} -> {current.get(k, 'removed')!r}" for k in missing)
        + f". Name each under '## Unreleased' in CHANGELOG.md, then refresh the snapshot: {REFRESH}")
    added = sorted(set(current) - set(recorded))
    assert not added, f"public names missing from the snapshot: {added}; refresh it: {REFRESH}"


def test_a_removed_or_changed_name_fails_unless_the_changelog_names_it():
    recorded = {"genflow.interfaces.bind": "(backbone, r, cond)", "genflow.interfaces.Derivative.order": "attribute: int",
                "genflow.rng.preserved_rng": "(device)"}
    current = {"genflow.interfaces.bind": "(backbone, r, cond, extra)", "genflow.rng.preserved_rng": "(device)"}
    assert undocumented_changes(recorded, current, "") == ["genflow.interfaces.bind",
                                                            "genflow.interfaces.Derivative.order"]
    notes = "- `bind` takes `extra`.\n- `Derivative.order` is gone.\n"
    assert undocumented_changes(recorded, current, notes) == []
    section = unreleased("# Changelog\n\n## Unreleased\n\n- `x`\n\n## 0.1.0\n\n- `y`\n")
    assert "`x`" in section and "`y`" not in section


@pytest.mark.parametrize("module", sorted(api.PUBLIC))
def test_every_public_name_exists_and_is_documented(module):
    """Each public name resolves; functions and classes carry a docstring."""
    import importlib
    import inspect

    mod = importlib.import_module(module)
    for name in api.PUBLIC[module]:
        obj = getattr(mod, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and module != "genflow":
            assert inspect.getdoc(obj), f"{module}.{name} has no docstring"
