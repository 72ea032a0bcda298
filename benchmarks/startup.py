"""Start-up time of the ``genflow`` command against ``python -c "import torch"``, as ratios.

Every command runs ``--repeats`` times, interleaved round-robin with the others so that a change in
the machine's load hits all of them alike; the figures are the ratios of medians and of minimums
(the least disturbed run) to ``import torch``'s, in one run. Writes ``benchmarks/results/startup.json``.

    python benchmarks/startup.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

#: ``name -> argv``; the first entry is the reference the others are divided by.
COMMANDS: dict[str, list[str]] = {
    "import torch": [sys.executable, "-c", "import torch"],
    "genflow --help": [sys.executable, "-m", "genflow", "--help"],
    "genflow plugins": [sys.executable, "-m", "genflow", "plugins"],
    "genflow config": [sys.executable, "-m", "genflow", "config"],
    "genflow train --dry-run": [sys.executable, "-m", "genflow", "train", "--dry-run"],
}


def time_once(argv: list[str]) -> float:
    """Wall seconds of one run of ``argv`` (output discarded; a failure raises)."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, list[float]]:
    """``repeats`` wall times per command, interleaved (after one untimed warm-up run each)."""
    for argv in COMMANDS.values():
        time_once(argv)  # warm the file cache and byte-code
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, argv in COMMANDS.items():
            times[name].append(time_once(argv))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "startup.json")
    args = parser.parse_args()
    times = measure(args.repeats)
    reference, fastest = statistics.median(times["import torch"]), min(times["import torch"])
    rows = {name: {"median_s": round(statistics.median(t), 3),
                   "ratio_to_import_torch": round(statistics.median(t) / reference, 2),
                   "min_s": round(min(t), 3), "ratio_of_minimums": round(min(t) / fastest, 2),
                   "runs_s": [round(x, 3) for x in t]}
            for name, t in times.items()}
    load = os.getloadavg()
    result = {"repeats": args.repeats, "cpus": os.cpu_count(), "load_average_1_5_15": [round(x, 2) for x in load],
              "genflow": shutil.which("genflow"), "python": sys.version.split()[0], "commands": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(name) for name in rows)
    for name, row in rows.items():
        print(f"{name:<{width}}  median {row['median_s']:6.2f} s  {row['ratio_to_import_torch']:.2f}x   "
              f"min {row['min_s']:6.2f} s  {row['ratio_of_minimums']:.2f}x")
    print(f"load average {load[0]:.1f} on {os.cpu_count()} CPUs; written {args.out}")


if __name__ == "__main__":
    main()
