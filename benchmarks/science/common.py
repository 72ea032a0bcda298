"""Shared driver of the science experiments: train runs through the real CLI, evaluate them with
`genflow eval`, aggregate seeds (mean and spread). A run folder is named by a hash of its training
arguments, and runs are found again by their resolved config (``RunIndex``), so experiments share
runs (the default TiM run serves every ablation) and an interrupted experiment resumes where it
stopped.

Runs are independent processes (``OMP_NUM_THREADS=1`` each) so ``--jobs`` of them share the CPU.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from genflow.train import checkpoint

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results" / "science"


class Variant:
    """One trained configuration: a name, ``genflow train`` arguments and ``key=value`` overrides,
    and ``eval_args`` of its own (e.g. ``--guidance``: the same trained run, sampled otherwise)."""

    def __init__(self, name: str, args: Sequence[str] = (), overrides: Mapping[str, Any] | None = None,
                 eval_args: Sequence[str] = ()) -> None:
        self.name, self.args = name, list(args)
        self.overrides = dict(overrides or {})
        self.eval_args = list(eval_args)

    def train_argv(self, seed: int, steps: int | None) -> list[str]:
        overrides = {**self.overrides, "train.seed": seed}
        if steps is not None and "train.steps" not in self.overrides:  # a variant's own steps win
            overrides["train.steps"] = steps
        return [*self.args, *(f"{k}={_toml(v)}" for k, v in overrides.items())]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    return repr(value)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def genflow(*argv: str, log: pathlib.Path) -> None:
    """Run ``genflow ARGV`` (the installed CLI of this interpreter), output to ``log``; raise on failure."""
    with open(log, "a") as out:
        proc = subprocess.run([sys.executable, "-m", "genflow", *argv], stdout=out, stderr=subprocess.STDOUT,
                              env=_env(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"genflow {' '.join(argv)} failed ({proc.returncode}); see {log}")


def _key(*parts: Sequence[str]) -> str:
    return hashlib.sha1(json.dumps([list(p) for p in parts]).encode()).hexdigest()[:12]


def resolved_config(*argv: str) -> str:
    """``genflow config ARGV``: the resolved config as TOML, every default filled in by the current code."""
    proc = subprocess.run([sys.executable, "-m", "genflow", "config", *argv], capture_output=True, text=True,
                          env=_env(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"genflow config {' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


class RunIndex:
    """Finished runs by the hash of their resolved config (``workdir/index.json``), so that two
    argument lists that resolve to the same config (an option given at its default value, or left
    to a default that has moved to that value) share one run. Runs trained before the index
    existed are added the first time it is opened."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.path, self._lock = workdir / "index.json", threading.Lock()
        self.runs: dict[str, str] = json.loads(self.path.read_text()) if self.path.exists() else {}
        known = set(self.runs.values())
        for record in sorted(workdir.glob("*/science.json")):
            if record.parent.name not in known:
                config = resolved_config("--config", str(record.parent / "config.toml"))
                self.runs.setdefault(_key([config]), record.parent.name)
        self._write()

    def find(self, config: str) -> pathlib.Path | None:
        name = self.runs.get(_key([config]))
        return None if name is None else self.path.parent / name

    def add(self, config: str, run: pathlib.Path) -> None:
        with self._lock:
            self.runs.setdefault(_key([config]), run.name)
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.runs, indent=1))
        tmp.replace(self.path)


def train(argv: Sequence[str], workdir: pathlib.Path, index: RunIndex) -> tuple[pathlib.Path, float]:
    """The run folder of ``genflow train ARGV`` and its training wall time in seconds: a finished
    run of the same resolved config if there is one (``index``), else trained now into a folder
    named by ``ARGV`` (by ``ARGV`` and the config when that folder holds a run trained under
    other defaults: it stays as the record of its experiment)."""
    config = resolved_config(*argv)
    run = index.find(config)
    if run is None:
        run = workdir / _key(argv)
        if (run / "science.json").exists():
            run = workdir / _key(argv, [config])
    record = run / "science.json"
    if record.exists():
        return run, json.loads(record.read_text())["train_s"]
    if run.exists():
        shutil.rmtree(run)  # an interrupted run: start it again
    start = time.perf_counter()
    genflow("train", "--run-dir", str(run), "--no-progress", *argv, log=workdir / f"{run.name}.log")
    train_s = time.perf_counter() - start
    record.write_text(json.dumps({"argv": list(argv), "train_s": train_s}))
    index.add(config, run)
    return run, train_s


def evaluate(run: pathlib.Path, eval_steps: Sequence[int], eval_args: Sequence[str]) -> dict[str, dict[str, float]]:
    """``genflow eval`` of the EMA weights of ``run``'s last checkpoint at ``eval_steps`` (cached per
    arguments): ``{metric: {steps: value}}``. The checkpoint, not ``model.pt``: CPU runs of older
    versions wrote their raw weights to ``model.pt`` (CHANGELOG.md, 2026-11-27), so every run is
    evaluated alike."""
    last, _ = checkpoint.latest_checkpoint(run)
    args = ["--steps", ",".join(map(str, eval_steps)), "--checkpoint", str(last), *eval_args]
    out = run / f"eval-{_key(args)}"
    if not (out / "eval.json").exists():
        genflow("eval", str(run), "--out", str(out), "--no-progress", *args, log=run.parent / f"{run.name}.log")
    return metrics_by_steps(json.loads((out / "eval.json").read_text()))


def metrics_by_steps(table: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``{metric: {str(steps): value}}`` from `genflow eval`'s eval.json rows."""
    out: dict[str, dict[str, float]] = {}
    for row in table["rows"]:
        out.setdefault(row["metric"], {})[str(row["steps"])] = row["value"]
    return out


def science_dir() -> pathlib.Path:
    """Where the experiments keep their runs (``GENFLOW_SCIENCE_DIR``, default ``runs/science``)."""
    return pathlib.Path(os.environ.get("GENFLOW_SCIENCE_DIR", "runs/science"))


def run_grid(variants: Sequence[Variant], seeds: Sequence[int], *, name: str, steps: int | None,
             eval_steps: Sequence[int], eval_args: Sequence[str] = (), jobs: int = 2) -> dict[str, Any]:
    """Train and evaluate every variant x seed, ``jobs`` at a time; the table is written to
    ``results/science/<name>.json`` as runs finish and returned."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = science_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Any] = {"runs": {}}
    index = RunIndex(workdir)

    def one(variant: Variant, seed: int) -> dict[str, Any]:
        argv = variant.train_argv(seed, steps)
        run, train_s = train(argv, workdir, index)
        metrics = evaluate(run, eval_steps, [*eval_args, *variant.eval_args])
        return {"variant": variant.name, "seed": seed, "args": argv, "run": str(run), "train_s": train_s,
                "metrics": metrics}

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, v, s) for v in variants for s in seeds]
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            cache["runs"][f"{row['variant']}/{row['seed']}"] = row
            (RESULTS / f"{name}.json").write_text(json.dumps(cache, indent=1))
            print(f"done {row['variant']} seed {row['seed']} ({row['train_s']:.0f} s)", flush=True)
    return cache


def summarize(cache: Mapping[str, Any], metric: str, variants: Sequence[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{variant: {steps: (mean, std, n)}}`` of ``metric`` over seeds."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for variant in variants:
        rows = [r["metrics"][metric] for r in cache["runs"].values() if r["variant"] == variant and metric in r["metrics"]]
        if not rows:
            continue
        steps = sorted(rows[0], key=float)
        out[variant] = {}
        for k in steps:
            values = [r[k] for r in rows]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[variant][k] = (statistics.fmean(values), std, len(values))
    return out


def summarize_paired(cache: Mapping[str, Any], metric: str, variants: Sequence[str],
                     baseline: str) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{variant: {steps: (mean, std, n)}}`` of ``variant - baseline`` on the same seed: seeds
    move every variant together, so paired differences resolve what the raw spread hides."""
    by_seed = {(r["variant"], r["seed"]): r["metrics"][metric] for r in cache["runs"].values()
               if metric in r["metrics"]}
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for variant in variants:
        seeds = [s for (v, s) in by_seed if v == variant and (baseline, s) in by_seed]
        if variant == baseline or not seeds:
            continue
        out[variant] = {}
        for k in sorted(by_seed[(variant, seeds[0])], key=float):
            diffs = [by_seed[(variant, s)][k] - by_seed[(baseline, s)][k] for s in seeds]
            std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            out[variant][k] = (statistics.fmean(diffs), std, len(diffs))
    return out


def metric_tables(cache: Mapping[str, Any], metric: str, variants: Sequence[str], *, baseline: str,
                  title: str = "", pairing: str = "same seed") -> tuple[dict[str, dict[str, tuple[float, float, int]]],
                                                                   list[str]]:
    """``(summary, tables)``: the markdown table of ``metric`` (mean ± std per variant) and, where
    the variants share more than one seed with ``baseline``, the table of differences to it."""
    title = title or metric
    summary = summarize(cache, metric, variants)
    tables = [markdown_table(summary, title)]
    paired = summarize_paired(cache, metric, variants, baseline=baseline)
    if any(n > 1 for cells in paired.values() for _, _, n in cells.values()):
        tables.append(markdown_table(paired, f"{title} minus {baseline} ({pairing})"))
    return summary, tables


def markdown_table(summary: Mapping[str, Mapping[str, tuple[float, float, int]]], metric: str,
                   digits: int = 3) -> str:
    """Rows = variants, columns = step counts, cells ``mean ± std``."""
    if not summary:
        return ""
    steps = list(next(iter(summary.values())))
    lines = [f"| {metric} | " + " | ".join(steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for variant, row in summary.items():
        cells = [f"{row[k][0]:.{digits}f} ± {row[k][1]:.{digits}f}" if k in row else "" for k in steps]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: Mapping[str, Mapping[str, tuple[float, float, int]]], metric: str, path: pathlib.Path,
         title: str = "", ylog: bool = False) -> None:
    """Metric vs steps (log2 axis), mean line with a +-std band per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for variant, row in summary.items():
        xs = [int(k) for k in row]
        mean = [row[k][0] for k in row]
        std = [row[k][1] for k in row]
        ax.plot(xs, mean, marker="o", label=variant)
        ax.fill_between(xs, [m - s for m, s in zip(mean, std, strict=True)], [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2)
    ax.set_xscale("log", base=2)
    if ylog:
        ax.set_yscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer steps and seeds (a smoke run, minutes)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel, one CPU thread each")
    return p
