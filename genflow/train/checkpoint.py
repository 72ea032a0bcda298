"""Checkpoints with ``torch.distributed.checkpoint``: atomic, keep-last-k, any world size.

Layout of a run folder::

    run/checkpoints/step_00001000/      one DCP checkpoint (model, EMA, optimizer, scheduler, ...)
    run/checkpoints/step_00001000.tmp/  a save in progress: never read, removed by the next save
    run/model.pt                        the final EMA weights as one plain file (weights only)

A save writes into ``*.tmp`` and renames it once every rank has finished, so a crash mid-save
leaves the previous complete checkpoint as the latest one. Old checkpoints are renamed to
``*.del.tmp`` before they are deleted, so a crash mid-delete never leaves half a checkpoint under a
``step_N`` name. Loading never unpickles anything but plain data (:mod:`genflow.train.safe_load`).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception

from genflow.errors import GenflowError
from genflow.train import safe_load
from genflow.train.distributed import LostRankError, World, barrier, is_lost_rank

CHECKPOINTS = "checkpoints"
_STEP = re.compile(r"^step_(\d{8})$")


def checkpoint_dir(run_dir: pathlib.Path, step: int) -> pathlib.Path:
    return run_dir / CHECKPOINTS / f"step_{step:08d}"


def list_checkpoints(run_dir: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """Complete checkpoints, oldest first."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return sorted(found)


def latest_checkpoint(run_dir: pathlib.Path) -> tuple[int, pathlib.Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save(state: dict[str, Any], run_dir: pathlib.Path, step: int, world: World, keep_last: int,
         extra: dict[str, str] | None = None) -> pathlib.Path:
    """Write ``state`` (tensors, via DCP) and ``extra`` (small text files, from rank 0) atomically as
    the checkpoint of ``step``; prune to the newest ``keep_last``."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if world.is_main:
        for stale in (run_dir / CHECKPOINTS).glob("*.tmp"):  # saves and deletions a crash interrupted
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(world)
    try:
        with warnings.catch_warnings():  # DCP warns that a single process saves without a process group
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.save(state, checkpoint_id=str(tmp), no_dist=not world.distributed)
        if world.is_main:
            for name, text in {**(extra or {}),
                               "genflow.json": json.dumps({"step": step, "world_size": world.world_size})}.items():
                _write_synced(tmp / name, text)
    except (Exception, CheckpointException) as exc:  # a full disk, a quota, a vanished folder: on every rank
        if world.distributed and is_lost_rank(exc):  # another rank died mid-save: not a disk problem
            raise LostRankError(f"saving the checkpoint of step {step}: {_reason(exc)}") from None
        if world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        kept = f"the previous checkpoint {previous[1]} is intact" if previous else "no earlier checkpoint exists"
        raise GenflowError(f"saving the checkpoint of step {step} failed ({_reason(exc)}); {kept}") from None
    barrier(world)
    if world.is_main:
        if final.exists():  # the same step saved again: move the old copy aside, never half-delete it
            _delete(final)
        tmp.rename(final)  # the commit point: from here on step_N is the latest complete checkpoint
        _sync_dir(final.parent)
        for _, old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            _delete(old)
    barrier(world)
    return final


def _delete(path: pathlib.Path) -> None:
    """Rename a checkpoint out of the ``step_N`` namespace, then delete it: a crash in between leaves
    a ``*.del.tmp`` folder that the next save removes, never a damaged ``step_N``."""
    doomed = path.with_name(path.name + ".del.tmp")
    shutil.rmtree(doomed, ignore_errors=True)
    path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _write_synced(path: pathlib.Path, text: str) -> None:
    with path.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _sync_dir(path: pathlib.Path) -> None:
    """Persist a rename in ``path`` (best effort: not every file system can open a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    _write_synced(tmp, text)
    tmp.replace(path)


def _reason(exc: BaseException) -> str:
    """The last line of an exception's text: DCP wraps the real error (``ValueError: Size
    mismatch ...``) in a ``CheckpointException`` whose text is a per-rank traceback."""
    lines = str(exc).strip().splitlines()
    return lines[-1][:300] if lines else type(exc).__name__


def load(state: dict[str, Any], path: pathlib.Path, world: World) -> None:
    """Load in place into ``state`` (resharding to the current world size). The metadata is read
    with a restricted unpickler and non-tensor values with ``weights_only=True``: a crafted
    checkpoint is refused with one line instead of running its code."""
    safe_load.read_dcp_metadata(path)  # refuses a foreign or crafted checkpoint before DCP sees it
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, storage_reader=safe_load.SafeFileSystemReader(path),
                     planner=safe_load.SafeLoadPlanner(path), no_dist=not world.distributed)
    except GenflowError:
        raise
    except (Exception, CheckpointException) as exc:  # many types for a foreign or damaged checkpoint
        for wrapped in getattr(exc, "failures", {}).values():  # DCP wraps what each rank raised
            if isinstance(wrapped[0], GenflowError):
                raise GenflowError(str(wrapped[0])) from None
        raise GenflowError(f"checkpoint '{path}' cannot be loaded into this model: {_reason(exc)}") from None


def read_json(path: pathlib.Path, name: str) -> dict[str, Any]:
    """The JSON object in file ``name`` of checkpoint ``path``; a missing or damaged file is one line."""
    try:
        data = json.loads((path / name).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GenflowError(f"checkpoint '{path}': {name} is missing or damaged ({safe_load.one_line(exc)})") from None
    if not isinstance(data, dict):
        raise GenflowError(f"checkpoint '{path}': {name} holds a {type(data).__name__}, expected a JSON object")
    return data


def export_weights(state_dict: Mapping[str, Any], config_toml: str, path: pathlib.Path) -> None:
    """One plain file for inference: ``{"config": TOML text, "model": tensors}`` (load with
    ``weights_only=True``). Written to a temporary name then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": config_toml, "model": state_dict}, tmp)
    tmp.replace(path)
