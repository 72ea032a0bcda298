"""Timing, memory and table helpers shared by ``genflow derivatives`` and the benchmarks.

On CPUs, candidates run in alternating rounds (:func:`interleaved`) so that machine noise hits each
alike, and CPU time is recorded next to wall time; on GPUs, CUDA events time the calls.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], *, device: torch.device, warmup: int, repeats: int,
               clock: str = "wall") -> list[float]:
    """Seconds per call of ``fn`` after ``warmup`` calls: CUDA events on GPUs; on CPUs wall time
    (``perf_counter``) or, with ``clock="cpu"``, the process's CPU time (``process_time``), which
    other processes on a shared machine disturb much less (with one torch thread)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type != "cuda":
        timer = time.process_time if clock == "cpu" else time.perf_counter
        times = []
        for _ in range(repeats):
            start = timer()
            fn()
            times.append(timer() - start)
        return times
    events = [torch.cuda.Event(enable_timing=True) for _ in range(repeats + 1)]
    events[0].record()
    for i in range(repeats):
        fn()
        events[i + 1].record()
    torch.cuda.synchronize(device)
    return [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:], strict=False)]


def wall_time(fn: Callable[[], Any], *, device: torch.device, calls: int) -> float:
    """Wall seconds of ``calls`` calls of ``fn``, synchronised (e.g. warm-up with compilation)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return time.perf_counter() - start


def cpu_and_wall(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(cpu, wall)`` seconds of one call (CPU devices)."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def interleaved(fns: Mapping[str, Callable[[], Any]], *, warmup: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """CPU and wall seconds per call of each function, run in alternating rounds (``a b c a b c``)
    so that machine noise hits every candidate alike; ``warmup`` untimed calls each first."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, dict[str, list[float]]] = {name: {"cpu": [], "wall": []} for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            cpu, wall = cpu_and_wall(fn)
            times[name]["cpu"].append(cpu)
            times[name]["wall"].append(wall)
    return times


def summary(times: Sequence[float]) -> dict[str, float]:
    """Median, min and spread of per-call seconds."""
    ordered = sorted(times)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return {"median_s": statistics.median(ordered), "min_s": ordered[0], "iqr_s": q3 - q1, "n": len(ordered)}


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak allocated / reserved GiB inside the block (CUDA only; empty on CPU)."""
    stats: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield stats
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        stats["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        stats["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table (floats with 3 significant digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
        return "-" if value is None else str(value)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]  # no rows: headers only
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
