"""The velocity error of an experiment's runs by time: ``E |F(x_t, t, t) - v|^2`` on real data.

``v`` is the conditional velocity of the run's path (``z - x`` on the linear one), so
``E |F - v|^2 = E |F - u|^2 + E |v - u|^2`` with ``u`` the marginal velocity: the second term does
not depend on the model, and the difference between two runs at one ``t`` is the difference of
their squared velocity errors. Every run sees the same images, labels and noise. This is what
many-step sampling integrates (docs/results.md section 2), measured without sampling.

    python benchmarks/science/velocity_loss.py EXPERIMENT [--num 2000]

reads the runs of ``benchmarks/results/science/EXPERIMENT.json`` (``run.py EXPERIMENT`` first; run
from where that ran) and writes ``benchmarks/results/science/velocity-EXPERIMENT.md``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import _paths  # noqa: F401
import torch
from common import RESULTS, metric_tables

from genflow.plugins import PluginManager
from genflow.sampling.runs import load_run

T_GRID = (0.02, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.98)


@torch.no_grad()
def velocity_mse(run_dir: pathlib.Path, n: int, seed: int = 0, chunk: int = 500) -> dict[str, float]:
    """``{t: E |F(x_t, t, t | y) - v_t|^2}`` (mean over elements) of the run's EMA model on ``n`` real samples."""
    run = load_run(run_dir, PluginManager())
    path, backbone = run.components.path, run.backbone.eval()
    batch = run.components.dataset.reference(n, seed=seed)
    x = batch.x.float()
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1))
    out = {}
    for t_unit in T_GRID:
        t = torch.full((n,), t_unit * path.t_max)
        x_t, v_t = path.interpolate(x, z, t), path.velocity(x, z, t)
        F = torch.cat([backbone(x_t[i : i + chunk], t[i : i + chunk], t[i : i + chunk],
                                batch.cond.index(torch.arange(i, min(n, i + chunk))))
                       for i in range(0, n, chunk)])
        out[f"{t_unit:g}"] = float((F.float() - v_t).square().mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--num", type=int, default=2000)
    args = p.parse_args()
    source = RESULTS / f"{args.experiment}.json"
    if not source.is_file():
        raise SystemExit(f"velocity_loss.py: {source} does not exist; run benchmarks/science/run.py {args.experiment}")
    runs = json.loads(source.read_text())["runs"].values()
    cache = {"runs": {f"{r['variant']}/{r['seed']}": {
        "variant": r["variant"], "seed": r["seed"],
        "metrics": {"velocity_mse": velocity_mse(pathlib.Path(r["run"]), args.num)}} for r in runs}}
    names = list(dict.fromkeys(r["variant"] for r in runs))
    title = "E |F(x_t, t, t) - v|^2 by t"
    lines = [f"# Velocity error: {args.experiment}\n", f"{args.num} real samples, the same noise for every run "
             f"(`python benchmarks/science/velocity_loss.py {args.experiment}`)\n",
             *(f"{table}\n" for table in metric_tables(cache, "velocity_mse", names, baseline=names[0], title=title)[1])]
    text = "\n".join(lines)
    (RESULTS / f"velocity-{args.experiment}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
