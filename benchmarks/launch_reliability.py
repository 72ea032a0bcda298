"""How often each multi-process launch of the docs finishes with exactly one run folder.

Every try runs in a fresh folder without ``--run-dir`` (the case where ranks used to pick folders
of their own), on time and with rank 1 (or node 1) starting ``--late`` seconds after the others::

    OMP_NUM_THREADS=1 python benchmarks/launch_reliability.py --tries 10 --late 3

Launches: ``genflow train --config debug --nproc 2`` (README), ``torchrun --standalone
--nproc-per-node 2 -m genflow train --config debug``, and two "nodes" x 1 process on localhost with
torchrun's c10d rendezvous (docs/runs.md). A try counts when every process exits 0, within
``--hang-guard`` seconds, and the working folder then holds one run folder with its final weights.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DELAYED = [sys.executable, "-m", "tests.unit.train.delayed_rank"]  # rank 1 sleeps before importing genflow
TRAIN = ["train", "--config", "debug", "--no-progress"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commands(launch: str) -> list[list[str]]:
    """The process(es) one try starts."""
    if launch == "nproc":
        return [[*DELAYED, TRAIN[0], "--nproc", "2", *TRAIN[1:]]]
    if launch == "torchrun":
        return [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                 "-m", "tests.unit.train.delayed_rank", *TRAIN]]
    endpoint = f"127.0.0.1:{_port()}"
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=bench",
            "-m", "tests.unit.train.delayed_rank", *TRAIN]
    return [node, node]


def one_try(launch: str, late: float, guard: float) -> tuple[bool, float, str]:
    with tempfile.TemporaryDirectory(prefix="genflow-launch-") as folder:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "GENFLOW_TEST_DELAY_RANK": "1",
               "GENFLOW_TEST_DELAY_S": str(late)}
        started = time.perf_counter()
        procs = [subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True) for cmd in commands(launch)]
        codes, errors = [], []
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=max(1.0, guard - (time.perf_counter() - started)))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                _, err = proc.communicate()
                err += "\n(hang guard)"
            codes.append(proc.returncode)
            errors.append(err)
        seconds = time.perf_counter() - started
        runs = list((pathlib.Path(folder) / "runs").glob("*")) if (pathlib.Path(folder) / "runs").is_dir() else []
        ok = all(c == 0 for c in codes) and len(runs) == 1 and (runs[0] / "model.pt").is_file()
        why = "" if ok else f"exit {codes}, {len(runs)} run folders: {errors[0].strip().splitlines()[-1:]}"
        return ok, seconds, why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--late", type=float, default=3.0, help="seconds rank 1 / node 1 starts late")
    parser.add_argument("--hang-guard", type=float, default=300.0)
    parser.add_argument("--launch", nargs="+", default=["nproc", "torchrun", "two-nodes"])
    args = parser.parse_args()
    print(f"{'launch':<10} {'rank 1 late':>11} {'finished':>9} {'median s':>9}")
    for launch in args.launch:
        for late in (0.0, args.late):
            results = [one_try(launch, late, args.hang_guard) for _ in range(args.tries)]
            times = sorted(s for _, s, _ in results)
            print(f"{launch:<10} {late:>10.1f}s {sum(ok for ok, _, _ in results):>4}/{args.tries:<4} "
                  f"{times[len(times) // 2]:>9.1f}", flush=True)
            for ok, _, why in results:
                if not ok:
                    print(f"    failed: {why}", flush=True)


if __name__ == "__main__":
    main()
