"""Everything under examples/ is written against genflow's public API only (``genflow.api``): no
private (underscore) imports, no modules or names outside the API, no built-in plugin modules, and no
copy of the derivative protocol's random-state replay (``genflow.rng`` provides it)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from genflow import api

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
#: Calls that mean a file re-implements the random-state replay instead of using ``genflow.rng``.
COPIED_PROTOCOL = ("fork_rng", "get_rng_state", "set_rng_state")


def own_packages(root: pathlib.Path) -> set[str]:
    """Top-level import packages that the example distributions under ``root`` define themselves."""
    return {p.name for p in root.glob("*/src/*") if p.is_dir()} | {p.parent.name for p in root.glob("*/*/__init__.py")}


def violations(source: str, own: set[str]) -> list[str]:
    """What in ``source`` reaches past genflow's public API."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _module_violations(alias.name, own)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += _module_violations(node.module, own)
            root = node.module.split(".")[0]
            for alias in node.names:
                if root in own:
                    continue
                if alias.name.startswith("_") and alias.name != "__version__":
                    found.append(f"private name {node.module}.{alias.name}")
                elif root.startswith("genflow") and api.is_public(node.module) and not api.is_public(node.module, alias.name):
                    found.append(f"{node.module}.{alias.name} is not in genflow.api.PUBLIC")
        elif isinstance(node, ast.Attribute) and node.attr in COPIED_PROTOCOL:
            found.append(f"copied derivative protocol: .{node.attr} (use genflow.rng / Derivative.forward_and_derivative)")
    return found


def _module_violations(module: str, own: set[str]) -> list[str]:
    root = module.split(".")[0]
    if root in own:
        return []
    if any(part.startswith("_") and not part.endswith("__") for part in module.split(".")):
        return [f"private module {module}"]
    if root.startswith("genflow") and not api.is_public(module):
        return [f"module {module} is not public (genflow.api.PUBLIC)"]
    return []


FILES = sorted(EXAMPLES.rglob("*.py"))
OWN = own_packages(EXAMPLES)


def test_there_are_examples():
    assert FILES and "genflow_meanflow" in OWN


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(EXAMPLES)) for p in FILES])
def test_example_uses_only_the_public_api(path):
    assert violations(path.read_text(encoding="utf-8"), OWN) == []


def test_the_check_catches_what_it_should():
    bad = (
        "from genflow_tim.objective import bind\n"
        "from genflow.train.trainer import Trainer\n"
        "from genflow.interfaces import _private, Derivative, not_public\n"
        "import genflow._hidden\n"
        "import torch\n"
        "state = torch.random.fork_rng()\n"
    )
    found = violations(bad, {"mine"})
    assert sorted(found) == sorted([
        "module genflow_tim.objective is not public (genflow.api.PUBLIC)",
        "module genflow.train.trainer is not public (genflow.api.PUBLIC)",
        "private name genflow.interfaces._private",
        "genflow.interfaces.not_public is not in genflow.api.PUBLIC",
        "private module genflow._hidden",
        "copied derivative protocol: .fork_rng (use genflow.rng / Derivative.forward_and_derivative)",
    ])
    assert violations("from mine._x import _y\nfrom genflow.objectives import interval_target\n", {"mine"}) == []
