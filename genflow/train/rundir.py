"""The run folder of ``genflow train``: decided once by rank 0, agreed by every rank (docs/runs.md).

Rank 0 resolves the folder (``--run-dir``, or ``runs/<time>-<objective>`` made unique), checks that
genflow may write there and takes the run lock; then it broadcasts the folder, or the one-line
error, to every rank. Each rank checks that it sees rank 0's lock file: a folder that is not shared
by every node is an error at start (rank 0 removes the folder it created), not a hang at the first
checkpoint. Once the run is built (model, data, the resumed checkpoint), rank 0 writes
``config.toml`` (new runs) or records the explicit changes of a resume (``changes.jsonl``); a run
that fails to build leaves nothing behind.

A run's ``config.toml`` is written once. ``genflow train --resume RUN KEY=VALUE ...`` records each
resume's overrides as one line of ``changes.jsonl``; the run's config is ``config.toml`` with every
recorded change applied in order (:func:`stored_config`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import pathlib
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
import torch.distributed as dist

from genflow import config as cfg
from genflow.errors import GenflowError
from genflow.plugins import PluginManager
from genflow.train.distributed import World
from genflow.train.runlock import LOCK, RunLock, read_holder


class AgreedError(GenflowError):
    """Rank 0's error, raised on every rank (rank 0 alone reports it)."""


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
    from genflow.commands.outputs import check_output_dir

    check_output_dir(run_dir, "--run-dir")
    if run_dir.is_dir() and holds_run(run_dir):
        raise GenflowError(f"run folder '{run_dir}' already holds a run; continue it with "
                           f"genflow train --resume {run_dir}, or choose another --run-dir")
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):  # a lock alone: a start that failed
        raise GenflowError(f"--run-dir '{run_dir}' is a folder with files that are not a genflow run; genflow "
                           "starts runs only in new or empty folders: choose another --run-dir")


@attrs.frozen
class Opened:
    """Rank 0's open run folder and its lock. Once the run is built (every rank sees the folder, the
    model, data and checkpoint loaded), :meth:`commit` writes ``config.toml`` (a new run) or records
    the resume's change; :meth:`abandon` undoes the opening when that fails."""

    run_dir: pathlib.Path
    lock: RunLock
    #: A new run: the folder was new or empty, so everything in it is this run's.
    new_run: bool
    #: rank 0 created the folder itself
    created: bool
    write: Callable[[], None]

    def commit(self) -> None:
        try:
            self.write()
        except BaseException:
            self.lock.release()
            raise

    def abandon(self) -> None:
        """Release the lock; a new run also removes what it wrote (and the folder it created)."""
        if self.new_run:
            for child in self.run_dir.iterdir():
                if child.name != LOCK:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        self.lock.release()
        if self.created:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()


def open_new_run(run_dir: pathlib.Path, config_toml: str) -> Opened:
    """Create the folder and take its lock (rank 0 of a new run); committing writes ``config.toml``."""
    check_new_run_dir(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    lock.acquire()
    if holds_run(run_dir):  # another run started here between the check and the lock
        lock.release()
        check_new_run_dir(run_dir)

    def write() -> None:
        from genflow.train.checkpoint import write_text_atomic

        write_text_atomic(run_dir / CONFIG, config_toml)

    return Opened(run_dir=run_dir, lock=lock, new_run=True, created=created, write=write)


def open_resumed_run(run_dir: pathlib.Path, overrides: Sequence[str], changed: Sequence[str]) -> Opened:
    """Take the lock of an existing run; committing records this resume's explicit ``overrides``
    when they change the config (``changed``: the keys they change)."""
    lock = RunLock(run_dir)
    lock.acquire()

    def write() -> None:
        if changed:
            record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "overrides": list(overrides), "changed": list(changed)}
            with (run_dir / CHANGES).open("a") as f:
                f.write(json.dumps(record) + "\n")

    return Opened(run_dir=run_dir, lock=lock, new_run=False, created=False, write=write)


# ------------------------------------------------------------------------------------------------
# agreement
# ------------------------------------------------------------------------------------------------


def agree(world: World, decide: Callable[[], Opened]) -> tuple[pathlib.Path, Opened | None]:
    """Rank 0 runs ``decide``; every rank returns the folder once every rank sees it (rank 0 also
    its :class:`Opened`), or raises the same ``AgreedError``."""
    opened: Opened | None = None
    message: dict[str, Any] = {}
    if world.is_main:
        try:
            opened = decide()
            message = {"run_dir": str(opened.run_dir), "token": opened.lock.token}
        except GenflowError as exc:
            message = {"error": str(exc)}
    message = _broadcast_json(message, world)
    if "error" in message:
        raise AgreedError(message["error"])
    run_dir = pathlib.Path(message["run_dir"])
    blind = _blind_ranks(run_dir, message["token"], world)
    if blind:
        if opened is not None:
            opened.abandon()
        raise AgreedError(f"rank {', '.join(map(str, blind))} cannot see the run folder '{run_dir}' that rank 0 "
                           "opened: every node needs it on a shared file system (give --run-dir a path on one)")
    return run_dir, opened


def _blind_ranks(run_dir: pathlib.Path, token: str, world: World) -> list[int]:
    """The ranks that do not see rank 0's lock file (the folder is not shared with their node)."""
    if not world.distributed:
        return []
    holder = read_holder(run_dir / LOCK)
    blind = torch.zeros(world.world_size, dtype=torch.int32, device=world.device)
    blind[world.rank] = int(holder is None or holder.get("token") != token)
    dist.all_reduce(blind)
    return [int(r) for r in blind.nonzero().flatten().tolist()]


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
