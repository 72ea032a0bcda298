"""The run lock: one training process group per run folder at a time (docs/runs.md).

``RUN/lock.json`` is created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFSv3+,
Lustre, GPFS, BeeGFS) by rank 0 of the run and holds who took it: host, pid, time, a random token.
While the run trains, a thread of the holder touches the file every ``HEARTBEAT_S`` seconds. A lock
is stale, and is taken over with a warning, when its process is gone (same host: no process with
that pid) or when it has not been touched for ``STALE_S`` seconds (another host, whose processes
cannot be seen from here). A takeover renames the stale file to a unique name first, so of two
processes taking over at once exactly one wins.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import secrets
import socket
import threading
import time
import warnings
from typing import Any

from genflow.errors import GenflowError

LOCK = "lock.json"
#: Seconds between the holder's touches of the lock file.
HEARTBEAT_S = 30.0
#: A lock on another host untouched this long is stale (10 heartbeats: survives a busy file server).
STALE_S = 300.0


class RunLock:
    """The lock of one run folder, held from :meth:`acquire` until :meth:`release`."""

    def __init__(self, run_dir: pathlib.Path) -> None:
        self.path = run_dir / LOCK
        self.token = secrets.token_hex(8)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``GenflowError`` naming its holder; a stale lock is taken over."""
        record = {"host": socket.gethostname(), "pid": os.getpid(), "since": _now(), "token": self.token}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_holder(self.path)
                if holder is None:
                    continue  # released between the two calls
                if not is_stale(holder, self.path):
                    raise GenflowError(f"run folder '{self.path.parent}' is being trained by pid {holder.get('pid')} "
                                       f"on {holder.get('host')} since {holder.get('since')} (lock {self.path}); "
                                       "wait for it to end or stop it first") from None
                self._take_over(holder)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            self._start_heartbeat()
            return
        raise GenflowError(f"could not take the run lock {self.path}: other processes keep taking it; try again")

    def _take_over(self, holder: dict[str, Any]) -> None:
        aside = self.path.with_name(f"{LOCK}.stale-{self.token}")
        try:
            self.path.rename(aside)
        except FileNotFoundError:
            return  # another process took it over first: the next attempt sees its lock
        aside.unlink(missing_ok=True)
        warnings.warn(f"genflow: took over the stale run lock of pid {holder.get('pid')} on {holder.get('host')} "
                      f"(since {holder.get('since')}; that process is gone)", stacklevel=3)

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="genflow-run-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def holds(self) -> bool:
        """Whether the lock file is still this lock's (not taken over, not removed)."""
        holder = read_holder(self.path)
        return holder is not None and holder.get("token") == self.token

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still this lock's."""
        self._stop.set()
        if self.holds():
            self.path.unlink(missing_ok=True)


def read_holder(path: pathlib.Path) -> dict[str, Any] | None:
    """The lock's record; ``None`` when there is no lock file. A damaged one reads as ``{}``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def is_stale(holder: dict[str, Any], path: pathlib.Path) -> bool:
    """Whether the process holding a lock is gone (see the module docstring)."""
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        return not _alive(pid)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    return age > STALE_S  # another host (or a damaged record, e.g. a crash mid-write): by the heartbeat


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
