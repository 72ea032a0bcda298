"""The repository is self-contained: no file refers to a document or a path outside it.

The math and the architecture the code follows live in docs/ (docs/math.md, docs/architecture.md);
code, tests, configs and docs cite those, or the paper (arXiv 2509.04394), never a brief kept elsewhere.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Names of documents that are not in the repository (spelled in parts so this file does not match).
OUTSIDE_DOCS = tuple(name + ".md" for name in ("TIM", "DESIGN", "BENCH" + "MARKS"))
#: Paths that leave the repository: a sibling "shared" folder, or the machine's work tree.
OUTSIDE_PATH = re.compile(r"(?:\.\./)+shared\b|/" + r"work/")
#: Relative links of markdown documents: ``[text](target)``.
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
#: Files whose text is checked: code, docs, configs (result files record their own provenance).
TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".txt", ".yaml", ".yml", ".sh"}


def tracked_files() -> list[pathlib.Path]:
    """The files git tracks (the tree below ROOT when git is not available)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        return [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        return [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts]


def text_files() -> list[pathlib.Path]:
    return [p for p in tracked_files() if p.suffix in TEXT_SUFFIXES and p.is_file()]


def test_no_file_cites_a_document_outside_the_repository():
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in tracked_files() if p.is_file()
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if any(name in line for name in OUTSIDE_DOCS)
    ]
    assert not offenders, f"cite docs/math.md, docs/architecture.md or the paper instead: {offenders}"


def test_no_code_or_doc_names_a_path_outside_the_repository():
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in text_files()
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE_PATH.search(line)
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("doc", sorted(p.relative_to(ROOT).as_posix() for p in text_files() if p.suffix == ".md"))
def test_relative_links_of_a_document_stay_inside_and_resolve(doc):
    path = ROOT / doc
    for target in MD_LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{doc} links outside the repository: {target}"
        assert resolved.exists(), f"{doc} links to a missing file: {target}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The patterns match the references they exist to forbid (so the tests above can fail)."""
    assert any(name in "see " + "TIM" + ".md section 4" for name in OUTSIDE_DOCS)
    assert OUTSIDE_PATH.search("../.." + "/shared/docs/x.md") and OUTSIDE_PATH.search("/" + "work/shared")
    assert MD_LINK.findall("[a](../x.md#s) [b](https://e.org)") == ["../x.md", "https://e.org"]
