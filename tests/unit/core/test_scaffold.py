"""``genflow new-plugin``: what it writes, what it refuses (one line, exit 2, nothing written), and that
the generated code uses genflow's public API only. (Installing and testing the generated package:
tests/e2e/test_new_plugin.py.)"""

from __future__ import annotations

import ast
import shutil
import subprocess

import pytest

from genflow.cli import main
from genflow.commands.new_plugin import files, requirement
from tests.unit.core.test_examples_public_api import violations


@pytest.mark.parametrize("kind", ["objective", "derivative"])
def test_the_package_layout_and_entry_point(tmp_path, kind, capsys):
    folder = tmp_path / "pkg"
    assert main(["new-plugin", "my_thing", "--kind", kind, "--dir", str(folder)]) == 0
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert written == sorted(["README.md", "pyproject.toml", "src/my_thing/__init__.py", f"src/my_thing/{kind}.py",
                              "src/my_thing/plugin.py", "tests/test_my_thing.py"])
    pyproject = (folder / "pyproject.toml").read_text()
    assert '[project.entry-points.genflow]\nmy_thing = "my_thing.plugin"' in pyproject
    assert f'dependencies = ["genflow{requirement()}"]' in pyproject
    assert f"genflow_{kind}s" in (folder / "src/my_thing/plugin.py").read_text()
    assert "next: pip install -e" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["objective", "derivative"])
def test_the_generated_code_parses_and_uses_only_the_public_api(kind):
    for path, text in files("my_thing", kind).items():
        if path.endswith(".py"):
            ast.parse(text)
            assert violations(text, {"my_thing"}) == [], path


def test_an_empty_existing_folder_is_used(tmp_path):
    assert main(["new-plugin", "fresh", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "src" / "fresh" / "objective.py").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["Bad-Name"], "'Bad-Name' is not a valid plugin name"),
    (["genflow_x"], "'genflow_x' is reserved"),
    (["thing", "--kind", "sampler"], "--kind 'sampler' is not supported; allowed: objective, derivative"),
    (["dde", "--kind", "derivative"], "a derivative named 'dde' is already registered"),
    (["tim"], "an objective named 'tim' is already registered"),
])
def test_bad_requests_fail_with_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_non_empty_folder_or_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["new-plugin", "thing", "--dir", str(tmp_path)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["new-plugin", "thing", "--dir", str(tmp_path / "mine.txt")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"] and (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[lint]')")
@pytest.mark.parametrize("kind", ["objective", "derivative"])
def test_the_generated_code_passes_ruff(tmp_path, kind):
    """With the ruff settings the generated pyproject.toml carries."""
    assert main(["new-plugin", "my_thing", "--kind", kind, "--dir", str(tmp_path / "pkg")]) == 0
    result = subprocess.run([shutil.which("ruff"), "check", "--no-cache", "."], cwd=tmp_path / "pkg",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
