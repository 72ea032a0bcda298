"""``genflow train --nproc N``: N training processes on this machine, watched until the last ends.

The ranks get the environment torchrun gives its workers (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``) and join a rendezvous store this process hosts (on a port the
system picks, so two runs never race for one). This process forwards SIGINT, SIGTERM and SIGHUP to
every rank and waits for them; on Linux each rank also gets SIGTERM should this process die. When a
rank fails, the others are stopped (SIGTERM, then SIGKILL after ``GRACE_S``) and one line names the
rank, the last complete checkpoint and the command that continues the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from genflow.train.distributed import LOST_RANK_EXIT

#: Seconds the other ranks get to end by themselves after one failed, and again after SIGTERM.
GRACE_S = 10.0
#: The file (path in the environment) where rank 0 writes the agreed run folder for this process.
INFO_ENV = "GENFLOW_LAUNCH_INFO"
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def launch_local(nproc: int, argv: list[str]) -> int:
    """Run ``python -m genflow ARGV`` as ``nproc`` ranks; the exit code is the first failure's."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    with tempfile.TemporaryDirectory(prefix="genflow-launch-") as scratch:
        info = pathlib.Path(scratch) / "run.json"
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port),
               "TORCHELASTIC_USE_AGENT_STORE": "True", "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
               "GROUP_RANK": "0", INFO_ENV: str(info)}
        ranks = [subprocess.Popen([*rank_command(), *argv], preexec_fn=_die_with_parent,
                                  env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
        codes, stopped = _watch(ranks)
        failed = _first_failure(codes)
        # exit code 2: the rank printed its own genflow error line
        if failed is not None and codes[failed][1] != 2 and not stopped:
            print(f"genflow: error: {_describe(failed, codes[failed][1])}; the other ranks have ended. "
                  f"{_resume_hint(info)}", file=sys.stderr)
    del store
    if failed is None:
        return 0
    code = codes[failed][1]
    return 128 - code if code < 0 else code


def rank_command() -> list[str]:
    """The command of one rank, before ``train ...``."""
    return [sys.executable, "-m", "genflow"]


def _die_with_parent() -> None:
    """In the child before ``exec``: SIGTERM when the launching process dies (Linux ``prctl``)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _watch(ranks: list[subprocess.Popen[bytes]]) -> tuple[dict[int, tuple[float, int]], bool]:
    """Wait for every rank, forwarding signals; after a failure stop the rest. Returns rank ->
    (time, exit code), and whether a signal asked the run to stop."""
    codes: dict[int, tuple[float, int]] = {}
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for proc in ranks:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        failed_at = None
        terminated = False
        while len(codes) < len(ranks):
            now = time.monotonic()  # one time per sweep: ranks that ended in one interval tie
            for rank, proc in enumerate(ranks):
                if rank not in codes and proc.poll() is not None:
                    codes[rank] = (now, proc.returncode)
                    if proc.returncode != 0 and failed_at is None:
                        failed_at = now
            if failed_at is not None and not terminated and time.monotonic() - failed_at > GRACE_S:
                _signal_all(ranks, signal.SIGTERM)
                terminated = True
            if failed_at is not None and time.monotonic() - failed_at > 2 * GRACE_S:
                _signal_all(ranks, signal.SIGKILL)
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return codes, bool(received)


def _signal_all(ranks: list[subprocess.Popen[bytes]], signum: int) -> None:
    for proc in ranks:
        if proc.poll() is None:
            proc.send_signal(signum)


def _first_failure(codes: dict[int, tuple[float, int]]) -> int | None:
    """The rank that failed first; one that lost contact with another rank comes last, and of ranks
    that ended in the same interval, one killed by a signal comes first."""
    failures = [(code == LOST_RANK_EXIT, at, code >= 0, rank) for rank, (at, code) in codes.items() if code != 0]
    return min(failures)[-1] if failures else None


def _describe(rank: int, code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        why = " (out of memory, or kill -9)" if -code == signal.SIGKILL else ""
        return f"rank {rank} was killed by {name}{why}"
    return f"rank {rank} failed with exit code {code} (its error is above)"


def _resume_hint(info: pathlib.Path) -> str:
    """The last complete checkpoint of the run rank 0 announced, and how to continue it."""
    try:
        run_dir = pathlib.Path(json.loads(info.read_text())["run_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return "No run folder was opened."
    from genflow.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        return f"Run folder {run_dir} has no complete checkpoint; start again or resume from step 0 with: " \
               f"genflow train --resume {run_dir}"
    return f"Last complete checkpoint: {latest[1]} (step {latest[0]}); continue with: genflow train --resume {run_dir}"


def announce(run_dir: pathlib.Path) -> None:
    """On rank 0 under ``launch_local``: tell the launching process the agreed run folder."""
    path = os.environ.get(INFO_ENV)
    if path:
        pathlib.Path(path).write_text(json.dumps({"run_dir": str(run_dir)}))
