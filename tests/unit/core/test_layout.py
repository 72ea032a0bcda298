"""The layout shows the architecture: the top of ``genflow/`` is the public API (plus the command's
entry point), everything else lives in a package; no import cycles (lazy imports included) in the
core or in the built-in plugins."""

from __future__ import annotations

import ast
import pathlib

import pytest

from genflow.api import PUBLIC

ROOT = pathlib.Path(__file__).resolve().parents[3]
#: Top-level modules that are not public API: the API listing and the command's entry points.
ENTRY_POINTS = {"genflow.api", "genflow.cli", "genflow.__main__"}


def module_name(path: pathlib.Path, base: pathlib.Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: pathlib.Path) -> dict[str, pathlib.Path]:
    return {module_name(p, package.parent): p for p in package.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or (
        isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")


def imports(path: pathlib.Path, known: set[str]) -> set[str]:
    """The known modules ``path`` imports anywhere (also inside functions: a lazy import only hides a
    cycle), except under ``if TYPE_CHECKING``; ``from a import b`` counts ``a.b`` when that is a module."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block)
                   for statement in block.body for node in ast.walk(statement)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= subs or ({node.module} & known)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by one depth-first search (enough to show that there are none)."""
    found, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif state[nxt] == 0:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if state[node] == 0:
            visit(node)
    return found


def test_the_top_level_of_genflow_is_the_public_api():
    top = {module_name(p, ROOT) for p in (ROOT / "genflow").glob("*.py")} - {"genflow"}
    public = set(PUBLIC) - {"genflow"}
    assert top - ENTRY_POINTS == public, "a top-level module that is not public API belongs in a package"


@pytest.mark.parametrize("package", ["genflow", "plugins/genflow_tim", "plugins/genflow_fm"])
def test_no_import_cycles(package):
    found = modules(ROOT / package)
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    for name in graph:  # a package's __init__ runs before its modules: a module importing it is no cycle
        graph[name] = {dep for dep in graph[name] if not name.startswith(dep + ".")}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import f\n")
    (tmp_path / "pkg" / "b.py").write_text("def g():\n    import pkg.a\n")
    (tmp_path / "pkg" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    found = modules(tmp_path / "pkg")
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    assert graph["pkg.c"] == set() and cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
