"""Where commands write: an output folder or file is checked before anything is written, and
nothing that exists is replaced without ``--overwrite`` (one line, exit code 2)."""

from __future__ import annotations

import os
import pathlib

from genflow.errors import GenflowError


def check_output_dir(path: pathlib.Path, option: str) -> None:
    """A folder genflow may create or write into: not a file, not below one, and writable (or
    creatable in a writable folder); one line, exit 2, before anything is written."""
    for blocking in (path, *path.parents):
        if blocking.exists() and not blocking.is_dir():
            what = "is a file" if blocking == path else f"is inside '{blocking}', which is a file"
            raise GenflowError(f"{option} '{path}' {what}, not a folder; choose another path")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GenflowError(f"{option} '{path}': the folder '{existing}' is not writable; choose another path")


def check_replaceable(folder: pathlib.Path, names: list[str], option: str, overwrite: bool) -> None:
    """The files ``names`` that a command is about to write into ``folder``: none that exists is
    replaced without ``--overwrite`` (one line, exit 2, before anything is written)."""
    existing = [name for name in dict.fromkeys(names) if (folder / name).exists()]
    if existing and not overwrite:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        raise GenflowError(f"{option} '{folder}' already holds {shown}; pass --overwrite to replace "
                           f"{'it' if len(existing) == 1 else 'them'}, or choose another {option}")
