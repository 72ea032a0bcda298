"""Data loading throughput: prepare a shapes store, then read demo-sized batches from it.

    python benchmarks/data_loading.py [--count 20000] [--resolution 32] [--batch 64] [--out DIR]

Prints a table and writes ``benchmarks/results/data_loading.json`` (or ``$OUT/data_loading.json``
with ``--out``). Figures: ``prepare`` wall time and samples/s, and reader samples/s for the demo
batch (64 at 32x32) in-process and with DataLoader workers. Compare the reader's samples/s with
the demo trainer's (batch / step time) measured on the same machine: the target is >= 20x.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genflow.data.autoencoders import Identity
from genflow.data.pipeline import prepare_store
from genflow.data.reader import ReadOptions, StoreLoader
from genflow.data.shapes import ShapesConfig
from genflow.data.sources import ShapesSource
from genflow.data.store import LatentStore


def time_prepare(url: str, count: int, resolution: int) -> float:
    start = time.perf_counter()
    prepare_store(ShapesSource(ShapesConfig(resolution=resolution, count=count)), Identity(), url, progress=False)
    return time.perf_counter() - start


def time_reader(store: LatentStore, *, batch: int, workers: int, batches: int, repeats: int) -> dict[str, float]:
    """Median samples/s over ``repeats`` runs of ``batches`` batches, after the first batch."""
    rates, first = [], []
    for repeat in range(repeats):
        loader = StoreLoader(store, batch_size=batch, seed=repeat, options=ReadOptions(num_workers=workers))
        start = time.perf_counter()
        it = iter(loader)
        next(it)  # start-up (workers, first window) reported separately
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        n = sum(len(b.x) for b in itertools.islice(it, batches))
        rates.append(n / (time.perf_counter() - start))
    return {"samples_per_s": statistics.median(rates), "first_batch_s": statistics.median(first)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=600, help="batches timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="folder for the JSON (default: benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        url = os.path.join(tmp, f"shapes{args.resolution}.zarr")
        prepare_s = time_prepare(url, args.count, args.resolution)
        store = LatentStore(url)
        rows = {
            "in-process": time_reader(store, batch=args.batch, workers=0, batches=args.batches, repeats=args.repeats),
            f"{args.workers} workers": time_reader(
                store, batch=args.batch, workers=args.workers, batches=args.batches, repeats=args.repeats
            ),
        }

    print(
        f"prepare shapes {args.count} x {args.resolution}x{args.resolution}: {prepare_s:.1f} s "
        f"({args.count / prepare_s:.0f} samples/s)"
    )
    print(f"{'reader (batch ' + str(args.batch) + ')':<22} {'samples/s':>12} {'first batch s':>14}")
    for name, row in rows.items():
        print(f"{name:<22} {row['samples_per_s']:>12.0f} {row['first_batch_s']:>14.3f}")

    result = {
        "benchmark": "data_loading",
        "dataset": {"name": "shapes", "count": args.count, "resolution": args.resolution},
        "batch_size": args.batch,
        "prepare_seconds": prepare_s,
        "prepare_samples_per_s": args.count / prepare_s,
        "reader": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    }
    out_dir = Path(args.out or Path(__file__).parent / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_loading.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
