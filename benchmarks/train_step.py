"""Training-step throughput: fm, tim-fm, dde, dde1, jvp side by side on one preset and batch.

    python benchmarks/train_step.py --preset unet --batch 64                 # CPU demo-like figure
    python benchmarks/train_step.py --preset B/4 --batch 256 --precision bf16 --compile

Each mode runs the real ``Trainer.train_step`` (objective + derivative + backbone + backward + clip +
AdamW + EMA) on random data. Figures per mode: median step time, it/s, samples/s, peak memory
(CUDA), FLOPs per step counted by ``torch.utils.flop_counter`` on an eager copy, model TFLOP/s,
and the step-time ratio to ``fm`` (genflow's flow-matching objective) and to ``tim-fm`` (the TiM
objective with every row ``r = t``, the reference's "fm"). On CPU the modes run in interleaved
rounds (noise hits all alike) and ratios are the median of per-round ratios of the process's CPU
time (``*_wall``: of wall time), steadier than wall time on a shared machine; on CUDA the modes run
one after the other (one model in memory at a time) and are timed with CUDA events. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import common
import torch
import torch._dynamo

from genflow.plugins import PluginManager


@attrs.frozen(kw_only=True)
class StepSetup:
    """What is measured: preset, batch, device and the trainer settings shared by every mode."""

    preset: str
    batch: int
    device: str = "cpu"
    precision: str = "fp32"
    compile: bool = False
    compile_mode: str = "default"
    compile_tuning: bool = False
    fsdp: bool = False
    fsdp_bf16: bool = False
    warmup: int = 2
    repeats: int = 10

    @property
    def variant(self) -> str:
        """``eager`` / ``compiled`` (``+<mode>``: a ``torch.compile`` mode; ``+tuned``: with
        ``train.compile_tuning``), with ``+fsdp2`` for the sharded path."""
        name = "eager"
        if self.compile:
            name = "compiled" + ("" if self.compile_mode == "default" else f"+{self.compile_mode}")
            name += "+tuned" if self.compile_tuning else ""
        return name + ("+fsdp2" if self.fsdp else "")


def build_trainer(manager: PluginManager, setup: StepSetup, mode: str, *, eager: bool = False) -> common.BenchTrainer:
    """The real trainer for ``mode`` (``eager``: without compile and FSDP, for FLOP counting)."""
    config = common.run_config(manager, preset=setup.preset, mode=mode, batch=setup.batch, device=setup.device,
                               precision=setup.precision, compile=setup.compile and not eager,
                               fsdp_bf16=setup.fsdp_bf16 and not eager,
                               train={} if eager else {"compile_mode": setup.compile_mode,
                                                       "compile_tuning": setup.compile_tuning})
    device = torch.device(setup.device)
    world = common.fsdp_world(device) if setup.fsdp and not eager else None
    return common.BenchTrainer(config, manager, world=world)


def step_flops(manager: PluginManager, setup: StepSetup, mode: str,
               trainer: common.BenchTrainer | None = None) -> int | None:
    """FLOPs of one training step, counted on an eager model (``None`` if counting fails)."""
    owned = trainer is None
    try:
        trainer = trainer or build_trainer(manager, setup, mode, eager=True)
        return common.count_flops(trainer.stepper())
    except Exception as exc:  # e.g. a transform the flop counter cannot see through
        print(f"  flop count of {mode} failed: {type(exc).__name__}: {exc}")
        return None
    finally:
        if owned:
            trainer = None
            common.free_memory()


def row(setup: StepSetup, mode: str, times: Sequence[float], flops: int | None, memory: Mapping[str, float],
        cpu_times: Sequence[float] | None = None) -> dict[str, Any]:
    """One result row: timing summary (wall; plus CPU time on CPUs), throughput, memory, TFLOP/s."""
    stats = common.summary(times)
    median = stats["median_s"]
    out: dict[str, Any] = {"preset": setup.preset, "batch": setup.batch, "variant": setup.variant,
                           "precision": setup.precision, "mode": mode, **stats, "it_per_s": 1 / median,
                           "samples_per_s": setup.batch / median, **memory}
    if cpu_times is not None:
        out["cpu_median_s"] = statistics.median(cpu_times)
    if flops is not None:
        out["step_tflop"] = flops / 1e12
        out["tflop_per_s"] = flops / median / 1e12
    return out


def add_ratios(rows: list[dict[str, Any]], paired: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> None:
    """``ratio_fm`` / ``ratio_tim_fm``: step time over the baseline's. On interleaved CPU runs
    (``paired``) the median of per-round ratios of CPU time (``*_wall``: of wall time); else the
    ratio of medians."""
    by_mode = {r["mode"]: r for r in rows}
    for base, key in (("fm", "ratio_fm"), ("tim-fm", "ratio_tim_fm")):
        if base not in by_mode:
            continue
        for r in rows:
            if paired is None:
                r[key] = r["median_s"] / by_mode[base]["median_s"]
                continue
            for clock, suffix in (("cpu", ""), ("wall", "_wall")):
                pairs = zip(paired[r["mode"]][clock], paired[base][clock], strict=True)
                r[key + suffix] = statistics.median(a / b for a, b in pairs)


def measure_interleaved(manager: PluginManager, setup: StepSetup, modes: Sequence[str]) -> list[dict[str, Any]]:
    """All modes in memory, timed in alternating rounds (CPU): robust ratios on a noisy machine."""
    trainers = {mode: build_trainer(manager, setup, mode) for mode in modes}
    steps: dict[str, Callable[[], None]] = {mode: t.stepper() for mode, t in trainers.items()}
    times = common.interleaved(steps, warmup=setup.warmup, rounds=setup.repeats)
    rows = []
    for mode in modes:
        eager = trainers[mode] if not (setup.compile or setup.fsdp) else None
        flops = step_flops(manager, setup, mode, eager)
        rows.append(row(setup, mode, times[mode]["wall"], flops, {}, cpu_times=times[mode]["cpu"]))
    add_ratios(rows, paired=times)
    return rows


Probe = Callable[[Callable[[], None]], Mapping[str, Any]]


def measure_one(manager: PluginManager, setup: StepSetup, mode: str, flops: int | None = None, *,
                probe: Probe | None = None) -> dict[str, Any]:
    """One mode on its own (CUDA): build, warm up (compilation included, timed as ``warmup_s``),
    time, record peak memory, free. ``probe(step)`` may add figures (e.g. a profile) before freeing.

    Compiled modes start from a dynamo reset: earlier modes' compiled variants of the blocks (each
    call checks their guards) and CUDA graphs (their memory pools stay allocated) would otherwise
    burden the later modes' host time and peak memory; compiled code comes back from inductor's
    on-disk cache."""
    device = torch.device(setup.device)
    if setup.compile:
        torch._dynamo.reset()
        common.free_memory()
    before = common.allocated_gib(device)  # leftovers of earlier modes would show here
    trainer = build_trainer(manager, setup, mode)
    step = trainer.stepper()
    with common.peak_memory(device) as memory:
        warmup_s = common.wall_time(step, device=device, calls=setup.warmup)
        times = common.time_calls(step, device=device, warmup=0, repeats=setup.repeats)
    extra = dict(probe(step)) if probe is not None else {}
    if flops is None and not (setup.compile or setup.fsdp):
        flops = step_flops(manager, setup, mode, trainer)
    del trainer, step
    common.free_memory()
    if flops is None:
        flops = step_flops(manager, setup, mode)
    return {**row(setup, mode, times, flops, memory), "warmup_s": warmup_s, "allocated_before_gib": before, **extra}


def measure(manager: PluginManager, setup: StepSetup, modes: Sequence[str], *, interleave: bool | None = None,
            flops: Mapping[str, int | None] | None = None, stop: Callable[[], bool] | None = None,
            probe: Mapping[str, Probe] | None = None) -> list[dict[str, Any]]:
    """Rows for every mode; interleaved by default on CPU, sequential on CUDA. Sequential runs skip
    the modes left once ``stop()`` is true (a time budget) and apply ``probe[mode]`` where given."""
    if interleave if interleave is not None else setup.device == "cpu":
        return measure_interleaved(manager, setup, modes)
    rows = []
    for mode in modes:
        if stop is not None and stop():
            rows.append({"preset": setup.preset, "variant": setup.variant, "mode": mode, "skipped": "time budget"})
            continue
        rows.append(measure_one(manager, setup, mode, (flops or {}).get(mode), probe=(probe or {}).get(mode)))
    add_ratios([r for r in rows if "median_s" in r])
    return rows


COLUMNS = ["preset", "batch", "variant", "mode", "median_s", "cpu_median_s", "it_per_s", "samples_per_s",
           "ratio_fm", "ratio_tim_fm", "ratio_fm_wall", "tflop_per_s", "peak_allocated_gib"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="unet", choices=sorted(common.PRESETS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--modes", default="fm,tim-fm,dde,dde1,jvp", help="comma-separated, from: "
                        + ", ".join(common.MODES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile each block")
    parser.add_argument("--compile-mode", default="default",
                        choices=["default", "reduce-overhead", "max-autotune-no-cudagraphs"])
    parser.add_argument("--tuning", action="store_true", help="train.compile_tuning (with --compile)")
    parser.add_argument("--fsdp", action="store_true", help="FSDP2 on a world of one (bf16 params)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps (CPU: interleaved rounds)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: steadier on a shared machine; 0: torch's default)")
    parser.add_argument("--out", help="folder for the JSON (default: $OUT, else benchmarks/results)")
    parser.add_argument("--name", default="", help="JSON file name (default: train_step_<preset>_<device>)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = StepSetup(preset=args.preset, batch=args.batch, device=args.device, precision=args.precision,
                      compile=args.compile, compile_mode=args.compile_mode, compile_tuning=args.tuning,
                      fsdp=args.fsdp, fsdp_bf16=args.fsdp, warmup=args.warmup,
                      repeats=args.repeats)
    rows = measure(common.plugin_manager(), setup, args.modes.split(","))
    print(common.table(rows, COLUMNS))
    name = args.name or f"train_step_{args.preset.replace('/', '')}_{torch.device(args.device).type}"
    path = common.out_dir(args.out) / f"{name}.json"
    common.write_json(path, {"benchmark": "train_step", "setup": attrs.asdict(setup),
                             "environment": common.environment(torch.device(args.device)), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
