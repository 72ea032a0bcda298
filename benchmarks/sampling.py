"""Sampling throughput of the ``transition`` sampler: images/s at 1, 4 and 16 steps, with and
without classifier-free guidance.

    python benchmarks/sampling.py --preset unet --batch 64
    python benchmarks/sampling.py --preset XL/2 --batch 64 --precision bf16 --compile

Times ``Sampler.sample`` on an (untrained) backbone in eval mode: every step is one network
evaluation of the batch, or of a ``2N`` batch when guidance is on. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from typing import Any

import common
import torch

from genflow.interfaces import Condition, Sampler
from genflow.plugins import PluginManager
from genflow.sampling.driver import fixed_noise, sample_conditions

STEPS = (1, 4, 16)
GUIDANCE = (1.0, 1.5)


def sampler_trainer(manager: PluginManager, preset: str, device: str, *, compile: bool = False) -> common.BenchTrainer:
    """A TiM trainer whose model and ``transition`` sampler are timed (batch size unused)."""
    config = common.run_config(manager, preset=preset, mode="dde", batch=1, device=device, compile=compile)
    return common.BenchTrainer(config, manager)


def time_sampler(trainer: common.BenchTrainer, *, batch: int, steps: int, guidance: float, precision: str,
                 warmup: int, repeats: int) -> dict[str, Any]:
    """Median seconds of one ``sample`` call and images/s for one (steps, guidance) point."""
    device, spec = trainer.world.device, trainer.components.spec
    sampler: Sampler = trainer.components.sampler
    noise = fixed_noise(spec, batch, seed=0, device=device)
    cond: Condition = sample_conditions(spec, batch, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def run() -> None:
        with autocast:
            sampler.sample(trainer.model, noise, cond, steps=steps, guidance=guidance)

    trainer.model.eval()
    times = common.time_calls(run, device=device, warmup=warmup, repeats=repeats)
    stats = common.summary(times)
    return {"steps": steps, "guidance": guidance, "batch": batch, **stats,
            "images_per_s": batch / stats["median_s"],
            "evals_per_s": batch * steps * (2 if guidance != 1.0 else 1) / stats["median_s"]}


def measure(trainer: common.BenchTrainer, *, batch: int, precision: str, steps: Sequence[int] = STEPS,
            guidance: Sequence[float] = GUIDANCE, warmup: int = 1, repeats: int = 3) -> list[dict[str, Any]]:
    """One row per (steps, guidance)."""
    return [time_sampler(trainer, batch=batch, steps=n, guidance=g, precision=precision, warmup=warmup,
                         repeats=repeats) for g in guidance for n in steps]


COLUMNS = ["preset", "variant", "batch", "steps", "guidance", "median_s", "images_per_s", "evals_per_s"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="unet", choices=sorted(common.PRESETS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile each block")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="folder for the JSON (default: $OUT, else benchmarks/results)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = sampler_trainer(common.plugin_manager(), args.preset, args.device, compile=args.compile)
    rows = [{"preset": args.preset, "variant": "compiled" if args.compile else "eager", **r}
            for r in measure(trainer, batch=args.batch, precision=args.precision, repeats=args.repeats)]
    print(common.table(rows, COLUMNS))
    device = torch.device(args.device)
    path = common.out_dir(args.out) / f"sampling_{args.preset.replace('/', '')}_{device.type}.json"
    common.write_json(path, {"benchmark": "sampling", "args": vars(args), "environment": common.environment(device),
                             "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
