"""One set of trained runs sampled by other samplers, on the same noise (issue "science").

Each ``--sampler NAME[:KEY=VALUE,...]`` copies every run to ``<run>-<sampler>`` with that sampler in
its config (weights hard-linked; options of the run's own sampler kept when the name is the same),
evaluates both with `genflow eval` (cached) and writes the tables of means over runs, and of
differences to the run's own sampler on the same run, to ``benchmarks/results/science/<NAME>.md``.

- ``--name diagonal --sampler euler``: TiM's short-gap transitions ``F(x_t, t, r)`` against Euler
  steps on its diagonal ``F(x_t, t, t)`` (its velocity): which one many-step quality is made of.
- ``--name stochastic --sampler transition:stochasticity=0.5``: the stochastic transition sampler
  (docs/math.md s7, step 3) against the deterministic one.

    python benchmarks/science/samplers.py RUN_DIR [RUN_DIR ...] --name NAME --sampler SPEC [--sampler SPEC ...]
                                          [--steps 4,16,64,128] [--num 500]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
from typing import Any

import _paths  # noqa: F401
import tomli_w
import tomllib
from common import RESULTS, evaluate, metric_tables

OWN = "the run's sampler"


def parse_sampler(spec: str) -> tuple[str, dict[str, Any]]:
    """``"transition:stochasticity=0.5,base_resolution=16"`` -> ``("transition", {...})`` (TOML values)."""
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"samplers.py: --sampler {spec!r}: options are KEY=VALUE, separated by commas")
        options[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
    return name.strip(), options


def sampler_copy(run: pathlib.Path, spec: str) -> pathlib.Path:
    """``run`` with its sampler replaced by ``spec`` (files hard-linked, config rewritten)."""
    copy = run.with_name(f"{run.name}-{re.sub(r'[^A-Za-z0-9.]+', '-', spec).strip('-')}")
    if not copy.exists():
        name, options = parse_sampler(spec)
        config = tomllib.loads((run / "config.toml").read_text())
        own = config.get("sampler", {})
        config["sampler"] = {**(own if own.get("name") == name else {}), "name": name, **options}
        shutil.copytree(run, copy, copy_function=os.link, ignore=shutil.ignore_patterns("eval-*", "config.toml"))
        (copy / "config.toml").write_text(tomli_w.dumps(config))
    return copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    p.add_argument("--sampler", action="append", required=True, help="NAME[:KEY=VALUE,...] (repeatable)")
    p.add_argument("--name", required=True, help="results/science/NAME.md")
    p.add_argument("--steps", default="4,16,64,128")
    p.add_argument("--num", type=int, default=500)
    args = p.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    eval_args = ["--num", str(args.num)]
    samplers = {OWN: list(args.runs), **{s: [sampler_copy(r, s) for r in args.runs] for s in args.sampler}}
    cache = {"runs": {f"{name}/{i}": {"variant": name, "seed": i, "metrics": evaluate(run, steps, eval_args)}
                      for name, runs in samplers.items() for i, run in enumerate(runs)}}
    lines = [f"{len(args.runs)} run(s): " + ", ".join(r.name for r in args.runs), ""]
    for metric in cache["runs"][f"{OWN}/0"]["metrics"]:
        lines += [f"{table}\n" for table in metric_tables(cache, metric, list(samplers), baseline=OWN,
                                                          pairing="same run")[1]]
    text = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
