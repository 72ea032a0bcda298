"""Where a toy2d model is wrong: its transition ``F(x_t, t, r)`` against the exact one, by ``t`` and gap.

For a Gaussian-mixture ``toy2d`` run, the exact transition velocity is
``F*(x_t, t, r) = (x_t - Phi(x_t, t -> r)) / (t - r)`` (the flow map of docs/math.md section 8, an RK4 solve of
the analytic marginal velocity), and ``F*(x_t, t, t) = u(x_t, t)``. ``x_t`` is drawn from the true
marginal (data + noise on the run's path). Prints the relative mean squared error
``|F - F*|^2`` (mean and median over samples) on a grid of ``t`` and of gaps ``t - r``.

    python benchmarks/science/toy_velocity.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import _paths  # noqa: F401
import torch

from genflow.eval.flow_map import flow_map, mixture_velocity
from genflow.interfaces import Condition
from genflow.plugins import PluginManager
from genflow.sampling.runs import load_run

T_GRID = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 0.99)
GAPS = (0.0, 0.01, 0.05, 0.2, 1.0)  # 1.0 = all the way to r = 0


@torch.no_grad()
def transition_errors(run_dir: pathlib.Path, n: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{gap: {t: mean (and t/median: median) squared error}}`` of the run's EMA model against the exact transition."""
    run = load_run(run_dir, PluginManager())
    dataset, path, backbone = run.components.dataset, run.components.path, run.backbone
    mixture = dataset.mixture()
    if mixture is None:
        raise SystemExit(f"{run_dir}: toy2d kind {dataset.config.kind!r} is not a Gaussian mixture")
    g = torch.Generator().manual_seed(seed)
    x = dataset.reference(n, seed=seed).x.double()
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    out: dict[str, dict[str, float]] = {}
    for gap in GAPS:
        row = {}
        for t_unit in T_GRID:
            t = t_unit * path.t_max
            r = max(t - gap * path.t_max, 0.0)
            x_t = path.interpolate(x, z, torch.full((n,), t, dtype=torch.float64))
            if r == t:
                target = mixture_velocity(mixture, path, x_t, torch.tensor(t))
            else:
                x_r = flow_map(mixture, path, x_t, steps=256, t_start=t, t_end=r)
                target = (x_t - x_r) / (t - r)
            tt = torch.full((n,), t, dtype=torch.float32)
            rr = torch.full((n,), r, dtype=torch.float32)
            F = backbone(x_t.float(), tt, rr, Condition()).double()
            err = (F - target).square().sum(1)  # (n,)
            row[f"{t_unit:g}"] = float(err.mean())
            row[f"{t_unit:g}/median"] = float(err.median())
        out[f"{gap:g}"] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path)
    args = p.parse_args()
    for run_dir in args.runs:
        table = transition_errors(run_dir)
        print(f"\n{run_dir}: squared error |F - F*|^2 of F(x_t, t, r) (rows: gap t - r, columns: t)")
        for stat in ("mean", "median"):
            keys = [k for k in table["0"] if k.endswith("/median") == (stat == "median")]
            print(f"{stat}: gap " + " ".join(f"{k.split('/')[0]:>7}" for k in keys))
            for gap, row in table.items():
                print(f"{gap:<11} " + " ".join(f"{row[k]:7.3f}" for k in keys))
        (run_dir / "transition_errors.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
