"""docs/plugins.md stays true: its hook reference is generated from genflow/hookspecs.py, its code parses,
and the hooks its examples implement exist. (The guide's steps themselves run in
tests/e2e/test_third_party_plugin.py.)

``python tests/unit/core/test_plugin_guide.py`` prints the hook reference to paste between the
``hook-reference`` markers of the guide.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re
from collections.abc import Callable

import attrs
import tomllib

from genflow import hookspecs
from genflow.registry import KINDS

GUIDE = pathlib.Path(__file__).resolve().parents[3] / "docs" / "plugins.md"
FILE_MARKER = re.compile(r"^# file: (\S+)\s*$")
START, END = "<!-- hook-reference:start -->", "<!-- hook-reference:end -->"
REGISTRATION_INTRO = (
    "Each returns a list of `genflow.registry.Component`; genflow calls every implementation and merges\n"
    "the lists."
)


# --------------------------------------------------------------------------------------------
# Reading the guide (also used by the end-to-end test that follows it)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Block:
    """One fenced code block: its info string's first word (``bash``, ``python``, ...) and its text."""

    lang: str
    text: str


def code_blocks(markdown: str) -> list[Block]:
    """Every fenced (```) code block of ``markdown``, in order."""
    pattern = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
    return [Block(lang=(m.group(1).split() or [""])[0], text=m.group(2)) for m in pattern.finditer(markdown)]


def guide_files(markdown: str) -> dict[str, str]:
    """``{relative path: content}`` of every block whose first line is ``# file: PATH`` (that line dropped)."""
    files: dict[str, str] = {}
    for block in code_blocks(markdown):
        first, _, rest = block.text.partition("\n")
        match = FILE_MARKER.match(first)
        if match:
            files[match.group(1)] = rest
    return files


def guide_commands(markdown: str) -> list[str]:
    """Every command line of the ``bash`` blocks, in order (blank lines and comments dropped)."""
    lines = (line.strip() for block in code_blocks(markdown) if block.lang == "bash" for line in block.text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --------------------------------------------------------------------------------------------
# The hook reference, from the specs
# --------------------------------------------------------------------------------------------


def hook_specs() -> dict[str, Callable[..., object]]:
    """Every function of ``genflow.hookspecs`` marked as a hook spec, in definition order."""
    marker = f"{hookspecs.PROJECT}_spec"
    found = [fn for fn in vars(hookspecs).values() if inspect.isfunction(fn) and hasattr(fn, marker)]
    return {fn.__name__: fn for fn in sorted(found, key=lambda fn: fn.__code__.co_firstlineno)}


def _annotation(annotation: object) -> str:
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def signature(fn: Callable[..., object]) -> str:
    """``genflow_train_start(config: Any, run_dir: Any, step: int) -> None``."""
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {_annotation(p.annotation)}" for p in sig.parameters.values())
    return f"{fn.__name__}({params}) -> {_annotation(sig.return_annotation)}"


def _summary(fn: Callable[..., object]) -> str:
    """The docstring on one line, reStructuredText literals as Markdown code."""
    return " ".join(inspect.cleandoc(fn.__doc__ or "").split()).replace("``", "`")


def render_hook_reference() -> str:
    """The guide's hook reference section, generated from ``genflow/hookspecs.py``."""
    registration = set(KINDS.values())
    specs = hook_specs()

    def items(names: list[str]) -> list[str]:
        return [f"- `{signature(specs[name])}`: {_summary(specs[name])}" for name in names]

    lines = ["### Registration hooks", "", REGISTRATION_INTRO, ""]
    lines += items([name for name in specs if name in registration])
    lines += ["", "### Lifecycle hooks", ""]
    lines += items([name for name in specs if name not in registration])
    return "\n".join(lines)


def _reference_section(markdown: str) -> str:
    assert START in markdown and END in markdown, f"{GUIDE} lost its {START} / {END} markers"
    return markdown.split(START, 1)[1].split(END, 1)[0].strip()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def test_every_hookspec_is_documented_with_its_arguments():
    section = _reference_section(_guide())
    missing = [signature(fn) for fn in hook_specs().values() if f"`{signature(fn)}`" not in section]
    assert not missing, f"{GUIDE.name} does not document these hooks as `signature`: {missing}"


def test_the_guide_names_no_hook_that_does_not_exist():
    named = set(re.findall(r"\b(genflow_[a-z_]+)\(", _guide()))
    assert named <= set(hook_specs()), f"hooks in {GUIDE.name} but not in genflow/hookspecs.py: {named - set(hook_specs())}"


def test_hook_reference_is_generated_from_the_specs():
    expected = render_hook_reference()
    assert _reference_section(_guide()) == expected, (
        f"the hook reference in {GUIDE} is out of date; replace the text between the markers with the output of "
        f"`python tests/unit/core/test_plugin_guide.py`:\n{expected}"
    )


def test_every_kind_and_its_build_context_is_in_the_component_table():
    guide = _guide()
    for kind, hook in KINDS.items():
        assert re.search(rf"^\| {kind} \| `{hook}` \| `build\(config", guide, re.MULTILINE), f"kind {kind} missing"


def test_python_blocks_compile_and_toml_blocks_parse():
    blocks = code_blocks(_guide())
    assert any(b.lang == "python" for b in blocks) and any(b.lang == "toml" for b in blocks)
    for block in blocks:
        if block.lang == "python":
            compile(block.text, f"{GUIDE.name}:python block", "exec")
        elif block.lang == "toml":
            tomllib.loads(block.text)


def test_hook_implementations_in_the_guide_take_arguments_of_their_spec():
    specs = hook_specs()
    implemented = 0
    for block in code_blocks(_guide()):
        if block.lang != "python":
            continue
        for node in ast.walk(ast.parse(block.text)):
            if isinstance(node, ast.FunctionDef) and any(ast.unparse(d) == "hookimpl" for d in node.decorator_list):
                implemented += 1
                assert node.name in specs, f"{node.name} is not a genflow hook"
                allowed = set(inspect.signature(specs[node.name]).parameters)
                assert {a.arg for a in node.args.args} <= allowed, f"{node.name} takes arguments its spec lacks"
    assert implemented >= 2


def test_the_guide_builds_a_plugin_from_an_empty_folder():
    files, commands = guide_files(_guide()), guide_commands(_guide())
    assert {"myobjective/pyproject.toml", "myobjective/src/myobjective/plugin.py",
            "myobjective/tests/test_myobjective.py"} <= set(files)
    entry_points = tomllib.loads(files["myobjective/pyproject.toml"])["project"]["entry-points"]["genflow"]
    assert entry_points == {"myobjective": "myobjective.plugin"}
    assert commands[0].startswith("pip install") and any(c.startswith("genflow train") for c in commands)
    assert all(c.split()[0] in ("pip", "genflow", "python") for c in commands), commands


if __name__ == "__main__":
    print(render_hook_reference())
