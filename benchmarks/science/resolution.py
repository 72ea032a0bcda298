"""Resolution generalisation (issue "science", item 5): a run trained on shapes at ``R x R`` (e.g. 32),
sampled at 1.5 R and 2 R (48, 64) with and without the resolution shift of docs/math.md sections 5 and 7.

The shift ``t -> s t / (1 + (s - 1) t)``, ``s = sqrt(n_tokens / n_base)``, moves the sampler's time
grid towards noise at larger sizes (more pixels carry more signal at the same noise level). The
sampler here is the run's ``transition`` sampler rebuilt with ``base_resolution = 32`` (shift on:
s = 1.5 at 48, 2 at 64) or 0 (off), on noise of the new size; a UNet is fully convolutional apart
from its attention over positions, so it accepts any size divisible by its downsampling factor.
Class and colour accuracy come from the shapes classifier trained at the sampled resolution.

    python benchmarks/science/resolution.py RUN_DIR [RUN_DIR ...] [--num 256]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics

import _paths  # noqa: F401
import attrs
import torch
from genflow_tim.sampler import TransitionSampler, TransitionSamplerConfig

from genflow.components.build import cache_dir
from genflow.eval import classifier as clf
from genflow.eval.metrics_shapes import classifier_config, shapes_config_of
from genflow.interfaces import DataSpec
from genflow.plugins import PluginManager
from genflow.sampling.driver import fixed_noise, sample_conditions
from genflow.sampling.runs import LoadedRun, load_run

SCALES = (1.0, 1.5, 2.0)  # sampled size / trained size
STEPS = (1, 2, 4, 8, 16)
RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results" / "science"


def evaluate(run_dir: pathlib.Path, num: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{"<res>/<shift on|off>": {"<steps>": class accuracy}}`` of one run."""
    run = load_run(run_dir, PluginManager())
    dataset = run.components.dataset
    shapes = shapes_config_of(dataset)
    if shapes is None:
        raise SystemExit(f"{run_dir}: not a shapes run")
    base = dataset.spec.shape[-1]
    run.backbone.eval()
    out: dict[str, dict[str, float]] = {}
    for res in (int(base * scale) for scale in SCALES):
        model = clf.load_or_train(classifier_config(attrs.evolve(shapes, resolution=res)), cache_dir())  # trains
        with torch.no_grad():
            out.update(_sample_at(run, spec_at(dataset.spec, res), base, model, num, seed))
    return out


def spec_at(spec: DataSpec, res: int) -> DataSpec:
    return DataSpec(shape=(spec.shape[0], res, res), num_classes=spec.num_classes)


def _sample_at(run: LoadedRun, spec: DataSpec, base: int, model: clf.TrainedClassifier, num: int,
               seed: int) -> dict[str, dict[str, float]]:
    """Class accuracy at ``spec``'s size, without the shift and (sizes other than ``base``) with it."""
    res = spec.shape[-1]
    noise = fixed_noise(spec, num, seed, torch.device("cpu"))
    cond = sample_conditions(spec, num, torch.device("cpu"))
    out: dict[str, dict[str, float]] = {}
    for shift in ((False,) if res == base else (False, True)):
        sampler = TransitionSampler(TransitionSamplerConfig(base_resolution=base if shift else 0),
                                    path=run.components.path, spec=spec)
        row = {}
        for steps in STEPS:
            x = sampler.sample(run.backbone, noise, cond, steps=steps)
            pixels = run.components.dataset.decode(x).clamp(-1, 1)
            row[str(steps)] = float((model.predict(pixels) == cond.labels).float().mean())
        out[f"{res}/{'shift' if shift else 'no shift'}"] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=pathlib.Path, help="run folders trained on shapes (one per seed)")
    p.add_argument("--num", type=int, default=256)
    p.add_argument("--name", default="resolution", help="results file name under benchmarks/results/science/")
    args = p.parse_args()
    tables = [evaluate(run, args.num) for run in args.runs]
    keys, steps = list(tables[0]), list(next(iter(tables[0].values())))
    lines = ["| class accuracy | " + " | ".join(steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for key in keys:
        cells = []
        for k in steps:
            values = [t[key][k] for t in tables]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.2f} ± {spread:.2f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"runs": [str(r) for r in args.runs], "tables": tables}, indent=1))
    (RESULTS / f"{args.name}.md").write_text(f"runs: {', '.join(map(str, args.runs))}\n\n{text}\n")


if __name__ == "__main__":
    main()
