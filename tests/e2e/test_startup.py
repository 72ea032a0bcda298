"""Start-up stays light: ``genflow --help`` imports no torch, and commands that only load the
plugins (``plugins``, ``config``, ``train --dry-run``) import no zarr. (What that buys in seconds
is measured by ``benchmarks/startup.py``, not asserted here.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from genflow.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("IMPORTED:" + ",".join(sorted(m for m in ("torch", "zarr", "matplotlib") if m in sys.modules)))
"""


def imported(*argv: str) -> set[str]:
    """The heavy modules loaded by running ``genflow ARGV`` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv))], capture_output=True, text=True,
                          timeout=1800)  # a hang guard
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("IMPORTED:"), proc.stdout
    return set(filter(None, line.removeprefix("IMPORTED:").split(",")))


@pytest.mark.parametrize("argv", [["--help"], [], ["train", "--help"], ["-p", "no:x", "--help"]])
def test_help_imports_no_torch(argv):
    assert imported(*argv) == set()


@pytest.mark.parametrize("argv", [["plugins"], ["config"]])
def test_plugin_commands_import_no_zarr_nor_matplotlib(argv):
    """(``train --dry-run`` opens the data store, as a start does, so it imports zarr.)"""
    assert imported(*argv) == {"torch"}
