"""Many-step TiM: its transitions ``F(x_t, t, r)`` with short gaps against Euler steps on its
diagonal ``F(x_t, t, t)`` (the ``r = t`` rows: its velocity), on the same noise (issue "science").

If Euler on the diagonal beats the short-gap transitions, the model's near-diagonal interval
outputs are worse than its velocity; if both match, many-step quality is its velocity's. Each run
is copied to ``<run>-euler`` with ``sampler.name = "euler"`` (weights hard-linked), both are
evaluated with `genflow eval` (cached), and the table of means over runs is printed and written to
``benchmarks/results/science/diagonal.md``.

    python benchmarks/science/diagonal.py RUN_DIR [RUN_DIR ...] [--steps 4,16,64,128] [--num 500]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil

import _paths  # noqa: F401
import tomli_w
import tomllib
from common import RESULTS, evaluate, markdown_table, summarize


def euler_copy(run: pathlib.Path) -> pathlib.Path:
    """``run`` with its sampler replaced by Euler on ``F(x, t, t)`` (files hard-linked, config rewritten)."""
    copy = run.with_name(run.name + "-euler")
    if not copy.exists():
        shutil.copytree(run, copy, copy_function=os.link, ignore=shutil.ignore_patterns("eval-*", "config.toml"))
        config = tomllib.loads((run / "config.toml").read_text())
        config["sampler"] = {"name": "euler"}
        (copy / "config.toml").write_text(tomli_w.dumps(config))
    return copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    p.add_argument("--steps", default="4,16,64,128")
    p.add_argument("--num", type=int, default=500)
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    eval_args = ["--num", str(args.num)]
    samplers = {"transition F(x, t, r)": list(args.runs), "Euler on F(x, t, t)": [euler_copy(r) for r in args.runs]}
    cache = {"runs": {f"{name}/{i}": {"variant": name, "seed": i, "metrics": evaluate(run, steps, eval_args)}
                      for name, runs in samplers.items() for i, run in enumerate(runs)}}
    lines = [f"{len(args.runs)} run(s): " + ", ".join(r.name for r in args.runs), ""]
    for metric in cache["runs"][f"{next(iter(samplers))}/0"]["metrics"]:
        lines += [markdown_table(summarize(cache, metric, list(samplers)), metric), ""]
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "diagonal.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
