"""Checkpoints with ``torch.distributed.checkpoint``: atomic, keep-last-k, any world size.

Layout of a run folder::

    run/checkpoints/step_00001000/      one DCP checkpoint (model, EMA, optimizer, scheduler, ...)
    run/checkpoints/step_00001000.tmp/  a save in progress: never read, removed by the next save
    run/model.pt                        the final EMA weights as one plain file (weights only)

A save writes into ``*.tmp`` and renames it once every rank has finished, so a crash mid-save
leaves the previous complete checkpoint as the latest one.
"""

from __future__ import annotations

import json
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
from genflow.train.distributed import World, barrier

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
        for stale in (run_dir / CHECKPOINTS).glob("*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(world)
    try:
        with warnings.catch_warnings():  # DCP warns that a single process saves without a process group
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.save(state, checkpoint_id=str(tmp), no_dist=not world.distributed)
        if world.is_main:
            for name, text in (extra or {}).items():
                (tmp / name).write_text(text)
            (tmp / "genflow.json").write_text(json.dumps({"step": step, "world_size": world.world_size}))
    except (Exception, CheckpointException) as exc:  # a full disk, a quota, a vanished folder: on every rank
        if world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        kept = f"the previous checkpoint {previous[1]} is intact" if previous else "no earlier checkpoint exists"
        raise GenflowError(f"saving the checkpoint of step {step} failed ({_reason(exc)}); {kept}") from None
    barrier(world)
    if world.is_main:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for _, old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier(world)
    return final


def _reason(exc: BaseException) -> str:
    """The last line of an exception's text: DCP wraps the real error (``ValueError: Size
    mismatch ...``) in a ``CheckpointException`` whose text is a per-rank traceback."""
    lines = str(exc).strip().splitlines()
    return lines[-1][:300] if lines else type(exc).__name__


def load(state: dict[str, Any], path: pathlib.Path, world: World) -> None:
    """Load in place into ``state`` (resharding to the current world size)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, checkpoint_id=str(path), no_dist=not world.distributed)
    except (Exception, CheckpointException) as exc:  # many types for a foreign or damaged checkpoint
        raise GenflowError(f"checkpoint '{path}' cannot be loaded into this model: {_reason(exc)}") from None


def export_weights(state_dict: Mapping[str, Any], config_toml: str, path: pathlib.Path) -> None:
    """One plain file for inference: ``{"config": TOML text, "model": tensors}`` (load with
    ``weights_only=True``). Written to a temporary name then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": config_toml, "model": state_dict}, tmp)
    tmp.replace(path)
