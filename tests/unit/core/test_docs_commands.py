"""Every shell block of the docs marked runnable is run as written, so the docs cannot drift from
the code. Convention: an HTML comment ``<!-- doctest -->`` on the line before a fenced block marks
it runnable (each block runs in a fresh folder, with ``genflow`` on the PATH, under ``bash -e``);
``<!-- doctest: gpu -->`` marks one that needs CUDA (skipped without it)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[3]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
MARK = re.compile(r"<!-- doctest(?P<gpu>: gpu)? -->\n```(?:bash|sh|shell)\n(?P<body>.*?)\n```", re.S)


def runnable_blocks() -> list[tuple[str, str, bool]]:
    blocks = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in MARK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{doc.name}:{line}", match["body"], bool(match["gpu"])))
    return blocks


BLOCKS = runnable_blocks()


def test_the_docs_have_runnable_blocks():
    assert any(where.startswith("data.md") for where, _, _ in BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize(("where", "body", "gpu"), BLOCKS, ids=[b[0] for b in BLOCKS])
def test_runnable_doc_block(tmp_path, where, body, gpu):
    if gpu and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    env = {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "GENFLOW_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", body], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{where}: the block fails as written:\n{proc.stderr[-3000:]}"
