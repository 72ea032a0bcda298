"""The run folder of ``genflow train``: decided once by rank 0, agreed by every rank (docs/runs.md).

Rank 0 resolves the folder (``--run-dir``, or ``runs/<time>-<objective>`` made unique), checks that
genflow may write there, takes the run lock and writes ``config.toml`` (new runs) or records the
explicit changes of a resume (``changes.jsonl``); then it broadcasts the folder, or the one-line
error, to every rank. Each rank checks that it sees rank 0's lock file: a folder that is not shared
by every node is an error at start, not a hang at the first checkpoint.

A run's ``config.toml`` is written once. ``genflow train --resume RUN KEY=VALUE ...`` records each
resume's overrides as one line of ``changes.jsonl``; the run's config is ``config.toml`` with every
recorded change applied in order (:func:`stored_config`).
"""

from __future__ import annotations

import datetime
import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from genflow import config as cfg
from genflow.errors import GenflowError
from genflow.plugins import PluginManager
from genflow.train.distributed import World
from genflow.train.runlock import LOCK, RunLock, read_holder

CONFIG = "config.toml"
CHANGES = "changes.jsonl"
#: Keys a resumed run fills in itself (the tokenizer found for the stored config's data).
_DERIVED = {"text_encoder.tokenizer", "text_encoder.tokenizer_sha256"}


# ------------------------------------------------------------------------------------------------
# the stored config
# ------------------------------------------------------------------------------------------------


def recorded_overrides(run_dir: pathlib.Path) -> list[str]:
    """Every ``KEY=VALUE`` recorded by the run's resumes, oldest first."""
    path = run_dir / CHANGES
    if not path.is_file():
        return []
    found: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.extend(str(item) for item in json.loads(line)["overrides"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise GenflowError(f"'{path}' line {number} is damaged (expected a JSON object with 'overrides')") from None
    return found


def stored_config(run_dir: pathlib.Path, manager: PluginManager, overrides: Sequence[str] = ()) -> cfg.RunConfig:
    """The run's config: ``config.toml``, then its recorded changes, then ``overrides``."""
    return cfg.load(manager, config_file=str(run_dir / CONFIG),
                    overrides=[*recorded_overrides(run_dir), *overrides])


def differences(a: cfg.RunConfig, b: cfg.RunConfig) -> list[str]:
    """Dotted keys whose values differ between two configs (``_DERIVED`` keys left out)."""
    flat_a, flat_b = _flatten(cfg.to_dict(a)), _flatten(cfg.to_dict(b))
    return sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k) and k not in _DERIVED)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# ------------------------------------------------------------------------------------------------
# rank 0's decision
# ------------------------------------------------------------------------------------------------


def default_run_dir(objective: str) -> pathlib.Path:
    """``runs/<time>-<objective>``, with ``-2``, ``-3``, ... when that folder exists."""
    base = pathlib.Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{objective}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def holds_run(run_dir: pathlib.Path) -> bool:
    return (run_dir / CONFIG).exists() or (run_dir / "checkpoints").exists()


def check_new_run_dir(run_dir: pathlib.Path) -> None:
    """A new run goes into a new or empty folder, never one that holds a run or anything else."""
    from genflow.runs import check_output_dir

    check_output_dir(run_dir, "--run-dir")
    if run_dir.is_dir() and holds_run(run_dir):
        raise GenflowError(f"run folder '{run_dir}' already holds a run; continue it with "
                           f"genflow train --resume {run_dir}, or choose another --run-dir")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise GenflowError(f"--run-dir '{run_dir}' is a folder with files that are not a genflow run; genflow "
                           "starts runs only in new or empty folders: choose another --run-dir")


def open_new_run(run_dir: pathlib.Path, config_toml: str) -> RunLock:
    """Create the folder, take its lock, write ``config.toml`` (rank 0 of a new run)."""
    check_new_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        if holds_run(run_dir):  # another run started here between the check and the lock
            check_new_run_dir(run_dir)
        from genflow.train.checkpoint import write_text_atomic

        write_text_atomic(run_dir / CONFIG, config_toml)
    except BaseException:
        lock.release()
        raise
    return lock


def open_resumed_run(run_dir: pathlib.Path, overrides: Sequence[str], changed: Sequence[str]) -> RunLock:
    """Take the lock of an existing run and record this resume's explicit ``overrides`` when they
    change the config (``changed``: the keys they change)."""
    lock = RunLock(run_dir)
    lock.acquire()
    if changed:
        record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "overrides": list(overrides), "changed": list(changed)}
        with (run_dir / CHANGES).open("a") as f:
            f.write(json.dumps(record) + "\n")
    return lock


# ------------------------------------------------------------------------------------------------
# agreement
# ------------------------------------------------------------------------------------------------


def agree(world: World, decide: Callable[[], tuple[pathlib.Path, RunLock]]) -> tuple[pathlib.Path, RunLock | None]:
    """Rank 0 runs ``decide``; every rank returns its folder, or raises its ``GenflowError``.
    The lock is returned on rank 0 only."""
    lock: RunLock | None = None
    if world.is_main:
        try:
            run_dir, lock = decide()
            message = {"run_dir": str(run_dir), "token": lock.token}
        except GenflowError as exc:
            message = {"error": str(exc)}
    else:
        message = {}
    message = _broadcast_json(message, world)
    if "error" in message:
        raise GenflowError(message["error"])
    run_dir = pathlib.Path(message["run_dir"])
    _check_shared(run_dir, message["token"], world, lock)
    return run_dir, lock


def _check_shared(run_dir: pathlib.Path, token: str, world: World, lock: RunLock | None) -> None:
    """Every rank sees rank 0's lock file (the folder is on a file system all nodes share)."""
    if not world.distributed:
        return
    holder = read_holder(run_dir / LOCK)
    blind = torch.zeros(world.world_size, dtype=torch.int32, device=world.device)
    blind[world.rank] = int(holder is None or holder.get("token") != token)
    dist.all_reduce(blind)
    if blind.any():
        if lock is not None:
            lock.release()
        ranks = ", ".join(str(r) for r in blind.nonzero().flatten().tolist())
        raise GenflowError(f"rank {ranks} cannot see the run folder '{run_dir}' that rank 0 created: every node "
                           "needs it on a shared file system (give --run-dir a path on one)")


def _broadcast_json(message: dict[str, Any], world: World) -> dict[str, Any]:
    if not world.distributed:
        return message
    data = torch.tensor(list(json.dumps(message).encode()), dtype=torch.uint8) if world.is_main else None
    size = torch.tensor([0 if data is None else data.numel()], dtype=torch.int64, device=world.device)
    dist.broadcast(size, src=0)
    buffer = data.to(world.device) if data is not None else torch.empty(int(size.item()), dtype=torch.uint8,
                                                                        device=world.device)
    dist.broadcast(buffer, src=0)
    return json.loads(bytes(buffer.cpu().tolist()).decode())
