"""Make ``genflow`` and its built-in plugins importable from a bare checkout (no ``pip install``).

Appends the repository root and ``plugins/`` to ``sys.path`` (an installed genflow still wins), so
``python benchmarks/science/run.py`` runs on a machine that only has the repository and the
dependencies. Imported by ``common`` before any genflow import.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

for _extra in (ROOT, ROOT / "plugins"):
    if str(_extra) not in sys.path:
        sys.path.append(str(_extra))
