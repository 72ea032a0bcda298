"""Every performance figure on one GPU, the headline ones in one call under 6 minutes; JSON to ``$OUT``.

    python benchmarks/gpu_suite.py --out "$OUT"           # one H100 / H200
    python benchmarks/gpu_suite.py --tiny --out /tmp/s    # the same sections on CPU, ~1-2 minutes

Sections, in order (each in its own try/except; the JSON is rewritten after each one; sections
that would start after ``--budget`` seconds are skipped and say so: on an H200 the default budget
ends the call after section 5, in 5-6 minutes; the rest need a second call with ``--skip``). Every training row: median step time, it/s, samples/s, peak memory, FLOPs per
step (``torch.utils.flop_counter``, counted on an eager step), TFLOP/s, MFU and the ratio to fm;
bf16 autocast, AdamW, EMA, random latents.

1. ``matmul``: the card's measured dense bf16 rate (8192^3 products), the denominator of MFU.
2. ``fixed costs XL/2``: clip + AdamW and the EMA update on XL/2's parameters, genflow's recipe side
   by side with the earlier one (``fixed_costs_section``).
3. ``train XL/2 b64 compiled+reduce-overhead``, ``train B/4 b256 compiled+reduce-overhead``: per-block
   ``train.compile`` (static shapes) with CUDA graphs (``train.compile_mode``); modes dde (central
   DDE, passes in the model's precision, i.e. bf16), fm, dde1 (one-sided), and both at genflow's
   default mixture (``dde-0.7``, ``dde1-0.7``; the others pin the reference's, ``diffusion_ratio``
   0.5); ``warmup_s`` includes the compilation. dde, dde1 and dde-0.7 are profiled (top CUDA
   kernels and host ops, ``profiles.txt``) and checked for host syncs (``host_syncs``,
   ``host_sync_sites``).
4. ``loop B/4 b256 shapes``: ``Trainer.run`` on the built-in ``shapes`` (32x32) with CUDA graphs,
   100 steps: samples/s of the whole loop (data, step, logging) against the loader alone, and the
   graphs dynamo compiled for it after a reset (0: the loop ran eagerly).
5. ``train XL/2 b64 compiled+reduce-overhead+tuned``: fm and dde with ``train.compile_tuning``
   (inductor's coordinate-descent tuning of its kernels; ~2 minutes of compilation).
6. ``train XL/2 b64 compiled``, ``train B/4 b256 compiled``: the same without CUDA graphs, dde and
   dde1 profiled.
7. ``train XL/2 b64 compiled+fsdp2``: FSDP2 on a world of one (NCCL, bf16 parameters, fp32
   reduction), per-block compile, profiled.
8. ``train XL/2 b64 eager``, ``train B/4 b256 eager``: fm, dde, dde1, dde-fp32 (fp32 passes), jvp;
   ``train XL/2 b64 eager+fsdp2``: fm, dde.
9. ``accuracy``: DDE error vs a float64 JVP on B/4 (untrained, zero-initialised weights redrawn)
   by epsilon, stencil and pass precision, on this card's bf16 kernels.
10. ``sampling``: images/s at 1, 4, 16 steps with and without guidance, B/4 and XL/2, eager bf16.

``summary`` checks the targets of docs/performance.md (H200 numbers, x0.9 on an H100).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import pathlib
import statistics
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import common
import derivative_accuracy
import sampling
import torch
import train_step

#: (preset, batch) of the full suite and of ``--tiny``.
FULL = (("B/4", 256), ("XL/2", 64))
TINY = (("debug", 8), ("debug", 4))
EAGER_MODES = ("fm", "dde", "dde1", "dde-fp32", "jvp")
COMPILED_MODES = ("dde", "fm", "dde1", "dde-0.7", "dde1-0.7")
FSDP_MODES = ("dde", "fm")
DDE_MODES = ("dde", "dde1", "dde-0.7", "dde1-0.7", "dde-fp32")
#: Targets on an H200 (docs/performance.md, "The reference and the targets"); H100 targets are 0.9x the throughputs.
TARGETS = {"xl2_dde_it_s": 6.0, "b4_dde_it_s": 19.0, "dde_fm_ratio": 1.25, "mfu": 0.45, "xl2_peak_gib": 45.7}


@attrs.define
class Suite:
    """Runs sections under a time budget and keeps the JSON on disk current."""

    path: pathlib.Path
    budget_s: float
    result: dict[str, Any]
    start: float = attrs.field(factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def over_budget(self) -> bool:
        return self.elapsed() > self.budget_s

    def section(self, name: str, run: Callable[[], Any]) -> Any:
        """Run one section, record ``ok`` / ``error`` / ``skipped``, write the JSON."""
        record: dict[str, Any] = {"started_s": round(self.elapsed(), 1)}
        value = None
        if self.over_budget():
            record["status"] = "skipped: time budget"
        else:
            try:
                value = run()
                record.update(status="ok", result=value)
            except Exception as exc:  # one failing section must not lose the others
                record.update(status="error", error=f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc()[-4000:])
            finally:
                common.free_memory()
        record["seconds"] = round(self.elapsed() - record["started_s"], 1)
        self.result["sections"][name] = record
        self.result["elapsed_s"] = round(self.elapsed(), 1)
        common.write_json(self.path, self.result)
        print(f"[{self.elapsed():6.1f} s] {name}: {record['status']} ({record['seconds']} s)", flush=True)
        if record["status"] == "error":
            print(record["traceback"], flush=True)
        return value


def configure_compile(tiny: bool) -> None:
    """Room for every (preset, grad mode, batch) graph of one process, all code objects together
    (the trainer's ``compile_backbone`` raises the per-code limit and compiles static shapes);
    ``--tiny`` compiles with dynamo's ``eager`` backend (graph capture without code generation) to
    stay fast."""
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(config, name):
            setattr(config, name, 1024)
    if tiny:
        original = torch.nn.Module.compile

        def compile_eager(self: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("backend", "eager")
            original(self, *args, **kwargs)

        torch.nn.Module.compile = compile_eager  # type: ignore[method-assign]


def host_syncs(step: Callable[[], None], device: torch.device) -> dict[str, Any]:
    """Synchronising CUDA calls of one step (``torch.cuda.set_sync_debug_mode("warn")``) and the
    innermost genflow / benchmark lines that made them (a sync-free step has none)."""
    if device.type != "cuda":
        return {}
    sites: list[str] = []
    armed = False  # only warnings raised by the step count, not deferred ones from before it

    def record(message: Any, category: Any, filename: str, lineno: int, *args: Any) -> None:
        if not armed or "synchroniz" not in str(message):
            return
        ours = [f for f in traceback.extract_stack()[:-1] if "genflow" in f.filename or "benchmarks" in f.filename]
        frame = ours[-1] if ours else None
        sites.append(f"{frame.filename.split('/')[-1]}:{frame.lineno} {frame.line}" if frame else f"{filename}:{lineno}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            armed = True
            step()
            common.synchronize(device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return {"host_syncs": len(sites), "host_sync_sites": sorted(set(sites))[:12]}


def profile(step: Callable[[], None], device: torch.device, out: pathlib.Path, name: str, steps: int = 3) -> dict[str, Any]:
    """``profile_steps`` or, if the profiler cannot run here (e.g. no CUPTI), the reason."""
    try:
        return profile_steps(step, device, out, name, steps)
    except Exception as exc:
        return {"profile_error": f"{type(exc).__name__}: {exc}"}


def profile_steps(step: Callable[[], None], device: torch.device, out: pathlib.Path, name: str,
                  steps: int) -> dict[str, Any]:
    """Top kernels / ops by self device time over ``steps`` steps; the full table goes to a text file."""
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        common.synchronize(device)
    events = prof.key_averages()
    kind = "device" if device.type == "cuda" else "cpu"

    def self_time(e: Any) -> float:
        names = ("self_device_time_total", "self_cuda_time_total") if kind == "device" else ("self_cpu_time_total",)
        return next((float(getattr(e, n)) for n in names if hasattr(e, n)), 0.0)

    def cpu_time(e: Any) -> float:
        return float(getattr(e, "self_cpu_time_total", 0.0))

    def entries(key: Callable[[Any], float]) -> list[dict[str, Any]]:
        top = sorted(events, key=key, reverse=True)[:25]  # kernels and ops, by self time
        return [{"name": e.key[:120], "ms_per_step": key(e) / 1e3 / steps, "calls_per_step": e.count / steps}
                for e in top]

    tables = []
    for sort_by in ("self_cuda_time_total", "self_device_time_total", "self_cpu_time_total"):
        with contextlib.suppress(Exception):  # sort keys differ between versions
            tables.append(f"sorted by {sort_by}\n" + events.table(sort_by=sort_by, row_limit=40))
    with (out / "profiles.txt").open("a") as f:  # one file: the device tool fetches at most 8
        f.write(f"==== {name} ====\n" + "\n\n".join(tables) + "\n\n")
    # self times count each kernel twice (the aten op and the kernel itself): halve for busy time
    return {"profile_device_busy_ms_per_step": sum(self_time(e) for e in events) / 2e3 / steps,
            "profile_cpu_ms_per_step": sum(cpu_time(e) for e in events) / 1e3 / steps,
            "profile_top": entries(self_time), "profile_top_cpu": entries(cpu_time)}


def train_section(suite: Suite, manager: Any, setup: train_step.StepSetup, modes: Sequence[str],
                  flops: dict[tuple[str, int, str], int | None], matmul: float | None,
                  probe: Callable[[str], Callable[[Callable[[], None]], Mapping[str, Any]]] | None = None,
                  probed: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One preset x variant: every mode, FLOPs shared between variants, MFU against ``matmul``;
    ``probe(mode)`` profiles the modes in ``probed``."""
    known = {m: flops.get((setup.preset, setup.batch, m)) for m in modes}
    probes = {m: probe(m) for m in probed} if probe is not None else None
    rows = train_step.measure(manager, setup, modes, interleave=False, flops=known, stop=suite.over_budget,
                              probe=probes)
    for r in rows:
        if "step_tflop" in r:
            flops.setdefault((setup.preset, setup.batch, r["mode"]), int(r["step_tflop"] * 1e12))
            if matmul:
                r["mfu"] = r["tflop_per_s"] * 1e12 / matmul
    print(common.table(rows, [*train_step.COLUMNS, "mfu", "warmup_s"]), flush=True)
    return rows


def loop_section(manager: Any, preset: str, batch: int, device: str, precision: str, *, compile_mode: str,
                 steps: int) -> dict[str, Any]:
    """The real ``Trainer.run`` (data pipeline, step, logging, final checkpoint and samples) on the
    built-in ``shapes`` at 32x32, against its loader alone (``next`` + the pinned copy to the device)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from genflow.train.trainer import Trainer, to_device

    config = common.run_config(manager, preset=preset, mode="dde", batch=batch, device=device, precision=precision,
                               compile=True, data={"name": "shapes", "resolution": 32},
                               train={"steps": steps, "log_every": steps // 4, "compile_mode": compile_mode})
    dev = torch.device(device)
    torch._dynamo.reset()  # compile this run's own graphs: earlier sections' would be reused uncounted
    with tempfile.TemporaryDirectory() as folder:
        run_dir = pathlib.Path(folder) / "run"
        trainer = Trainer(config, manager, run_dir, progress=False)
        batches = iter(trainer.components.dataset.loader(batch_size=batch, rank=0, world_size=1, seed=1))
        common.wall_time(lambda: to_device(next(batches), dev), device=dev, calls=3)  # opens the store
        loader_s = common.wall_time(lambda: to_device(next(batches), dev), device=dev, calls=20) / 20
        graphs_before = counters["stats"]["unique_graphs"]
        trainer.run()
        graphs = counters["stats"]["unique_graphs"] - graphs_before  # 0: the loop ran eagerly
        windows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [w["samples_per_s"] for w in windows if "samples_per_s" in w][1:]  # the first holds the compilation
    out = {"preset": preset, "batch": batch, "compile_mode": compile_mode, "steps": steps,
           "loader_samples_per_s": batch / loader_s, "loop_samples_per_s": statistics.median(rates),
           "loop_it_per_s": statistics.median(rates) / batch, "windows_samples_per_s": rates,
           "graphs_compiled": graphs}
    print(common.table([out], ["preset", "batch", "compile_mode", "loader_samples_per_s", "loop_samples_per_s",
                               "loop_it_per_s", "graphs_compiled"]), flush=True)
    return out


def fixed_costs_section(manager: Any, preset: str, device: str, repeats: int) -> dict[str, Any]:
    """The per-step work after the backward pass on ``preset``'s parameters, side by side: genflow's
    (gradient norm, AdamW with the clip as its ``grad_scale``, one multi-tensor ``lerp`` per EMA)
    against the earlier recipe (CHANGELOG.md, 2026-11-27: ``clip_grad_norm_``'s extra pass over the gradients,
    an EMA of three multi-tensor kernels with a device-side skip weight). Milliseconds per step."""
    from genflow.train.trainer import clip_scale

    setup = train_step.StepSetup(preset=preset, batch=1, device=device)
    trainer = train_step.build_trainer(manager, setup, "fm", eager=True)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer, ema, dev = trainer.optimizer, trainer.ema, torch.device(device)
    found_inf = torch.zeros((), device=dev)

    def clip_then_step() -> None:  # before
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.found_inf = found_inf
        optimizer.grad_scale = None
        optimizer.step()

    def norm_then_step() -> None:  # today's Trainer.train_step
        optimizer.grad_scale = clip_scale(trainer._grad_norm(), 1.0)
        optimizer.found_inf = found_inf
        optimizer.step()

    @torch.no_grad()
    def ema_three_kernels() -> None:  # before
        for average in ema.averages.values():
            diff = torch._foreach_sub(average.shadow_params, params)
            torch._foreach_mul_(diff, (1.0 - found_inf) * (1.0 - average.decay))
            torch._foreach_sub_(average.shadow_params, diff)

    def ms(fn: Callable[[], None]) -> float:
        return 1e3 * statistics.median(common.time_calls(fn, device=dev, warmup=3, repeats=repeats))

    out = {"preset": preset, "parameters": sum(p.numel() for p in params),
           "clip_and_adamw_before_ms": ms(clip_then_step), "clip_and_adamw_ms": ms(norm_then_step),
           "ema_before_ms": ms(ema_three_kernels), "ema_ms": ms(ema.update)}
    print(common.table([out], list(out)), flush=True)
    return out


def accuracy_section(manager: Any, preset: str, device: str, batch: int) -> list[dict[str, Any]]:
    """DDE vs float64 JVP on an untrained (redrawn) model of ``preset`` with random data."""
    trainer = derivative_accuracy.make_trainer(manager, preset, "random", device, batch=batch)
    data = trainer.components.dataset.reference(batch, seed=123)
    data = attrs.evolve(data, x=data.x.to(device), cond=data.cond.to(device))
    model = trainer.model
    derivative_accuracy.redraw_zero_weights(model)
    rows = derivative_accuracy.accuracy_rows(model, trainer.components.objective, data, label="untrained",
                                             epsilons=(0.0025, 0.005, 0.01, 0.02, 0.05),
                                             precisions=derivative_accuracy.PRECISIONS)
    derivative_accuracy.print_accuracy(rows, (0.0025, 0.005, 0.01, 0.02, 0.05))
    return rows


def sampling_section(manager: Any, preset: str, device: str, batch: int, precision: str) -> list[dict[str, Any]]:
    trainer = sampling.sampler_trainer(manager, preset, device)
    rows = [{"preset": preset, **r} for r in sampling.measure(trainer, batch=batch, precision=precision,
                                                               warmup=1, repeats=2)]
    print(common.table(rows, sampling.COLUMNS), flush=True)
    return rows


def measured_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every timed training row of the sections that ran."""
    return [r for s in result["sections"].values() if s.get("status") == "ok" and isinstance(s.get("result"), list)
            for r in s["result"] if isinstance(r, dict) and "it_per_s" in r and "mode" in r and "sampling" not in r]


def summary(result: Mapping[str, Any], presets: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Each derivative mode's best row per preset against the targets of docs/performance.md
    (H200 figures; throughputs x0.9 on an H100)."""
    rows = measured_rows(result)
    scale = 0.9 if "H100" in str(result["environment"].get("card", "")) else 1.0
    (small, small_batch), (large, large_batch) = presets
    targets = {(large, large_batch): TARGETS["xl2_dde_it_s"] * scale, (small, small_batch): TARGETS["b4_dde_it_s"] * scale}
    out: dict[str, Any] = {"throughput_scale": scale, "targets": TARGETS, "best": []}
    for (preset, batch), target in targets.items():
        for mode in (*DDE_MODES, "fm", "jvp"):
            found = [r for r in rows if (r.get("preset"), r.get("batch"), r.get("mode")) == (preset, batch, mode)]
            if not found:
                continue
            top = max(found, key=lambda r: r["it_per_s"])
            entry = {k: top.get(k) for k in ("preset", "batch", "mode", "variant", "it_per_s", "ratio_fm", "mfu",
                                              "peak_allocated_gib")}
            if mode != "fm":
                entry["it_per_s_target"] = target
                entry["pass_it_per_s"] = top["it_per_s"] >= target
                entry["pass_ratio"] = top.get("ratio_fm") is not None and top["ratio_fm"] <= TARGETS["dde_fm_ratio"]
                entry["pass_mfu"] = top.get("mfu") is not None and top["mfu"] >= TARGETS["mfu"]
            if (preset, batch) == (large, large_batch) and top.get("peak_allocated_gib") is not None:
                entry["pass_peak"] = top["peak_allocated_gib"] <= TARGETS["xl2_peak_gib"]
            out["best"].append(entry)
    print(common.table(out["best"], ["preset", "batch", "mode", "variant", "it_per_s", "it_per_s_target", "ratio_fm",
                                     "mfu", "peak_allocated_gib", "pass_it_per_s", "pass_ratio", "pass_mfu"]))
    return out


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for gpu_suite.json (default: $OUT, else benchmarks/results)")
    parser.add_argument("--tiny", action="store_true", help="debug preset on CPU: a quick check of every section")
    parser.add_argument("--budget", type=float, default=None, help="seconds after which sections and modes "
                        "are skipped (default 270; --tiny 240)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per mode (default 6; --tiny 2)")
    parser.add_argument("--modes", default=",".join(COMPILED_MODES), help="modes of the compiled sections")
    parser.add_argument("--skip", default="", help="comma-separated section names to skip, shell patterns "
                        "allowed (e.g. 'train * eager*,sampling*')")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    tiny = args.tiny or not torch.cuda.is_available()
    device = "cpu" if tiny else "cuda"
    presets = TINY if tiny else FULL
    repeats = args.repeats or (2 if tiny else 6)
    precision = "fp32" if tiny else "bf16"
    if tiny:
        torch.set_num_threads(1)  # several threads on a shared CPU can run 10x slower
    else:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 stays fp32: the dde-fp32 passes are what they say
    configure_compile(tiny)
    out = common.out_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"benchmark": "gpu_suite", "tiny": tiny,
                              "environment": common.environment(torch.device(device)), "sections": {}}
    suite = Suite(path=out / ("gpu_suite_tiny.json" if tiny else "gpu_suite.json"),
                  budget_s=args.budget or (240.0 if tiny else 270.0), result=result)
    manager = common.plugin_manager()
    skip = tuple(s for s in args.skip.split(",") if s)
    flops: dict[tuple[str, int, str], int | None] = {}

    def section(name: str, run: Callable[[], Any]) -> Any:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in skip):
            return None
        return suite.section(name, run)

    matmul = section("matmul", lambda: common.matmul_rate(torch.device(device), size=512 if tiny else 8192))
    result["matmul_tflops"] = matmul / 1e12 if matmul else None

    def setup(preset: str, batch: int, *, compile: bool = False, fsdp: bool = False,
              mode: str = "default", tuning: bool = False) -> train_step.StepSetup:
        # FSDP2 runs bf16 parameters (fp32 reduction) instead of autocast
        return train_step.StepSetup(preset=preset, batch=batch, device=device, compile=compile, compile_mode=mode,
                                    compile_tuning=tuning, fsdp=fsdp, fsdp_bf16=fsdp, precision="fp32" if fsdp else precision,
                                    warmup=3 if compile else 2, repeats=repeats)

    def probe(name: str) -> Callable[[Callable[[], None]], Mapping[str, Any]]:
        dev = torch.device(device)
        return lambda step: {**host_syncs(step, dev), **profile(step, dev, out, name)}

    def train(s: train_step.StepSetup, modes: Sequence[str], probed: Sequence[str] = ()) -> None:
        label = f"{s.preset.replace('/', '')}_b{s.batch}_{s.variant}".replace("+", "_")
        section(f"train {s.preset} b{s.batch} {s.variant}", lambda: train_section(
            suite, manager, s, modes, flops, matmul, probe=lambda m: probe(f"{label}_{m}"), probed=probed))

    (small, small_batch), (large, large_batch) = presets
    section(f"fixed costs {large}", lambda: fixed_costs_section(manager, large, device, 2 * repeats))
    # The headline figures first (the budget cuts the tail): with CUDA graphs, the training loop,
    # compiled per block without them, FSDP2, eager, accuracy, sampling.
    compiled_modes = args.modes.split(",")
    for preset, batch in ((large, large_batch), (small, small_batch)):
        train(setup(preset, batch, compile=True, mode="reduce-overhead"), compiled_modes,
              probed=("dde", "dde1", "dde-0.7"))
    section(f"loop {small} b{small_batch} shapes", lambda: loop_section(
        manager, small, small_batch, device, precision, compile_mode="default" if tiny else "reduce-overhead",
        steps=8 if tiny else 100))
    train(setup(large, large_batch, compile=True, mode="reduce-overhead", tuning=True), ("fm", "dde"))
    for preset, batch in ((large, large_batch), (small, small_batch)):
        train(setup(preset, batch, compile=True), compiled_modes, probed=("dde", "dde1"))
    train(setup(large, large_batch, fsdp=True, compile=True), FSDP_MODES, probed=("dde",))
    train(setup(large, large_batch), EAGER_MODES)  # the reference's eager memory figure
    train(setup(small, small_batch), EAGER_MODES)
    train(setup(large, large_batch, fsdp=True), FSDP_MODES)
    section("accuracy", lambda: accuracy_section(manager, presets[0][0], device, 8 if tiny else 64))
    for preset, batch in presets:
        section(f"sampling {preset} b{batch}", lambda p=preset, b=batch: sampling_section(manager, p, device, b, precision))
    result["summary"] = summary(result, presets)
    common.write_json(suite.path, result)
    print(f"wrote {suite.path} in {suite.elapsed():.0f} s")


if __name__ == "__main__":
    main()
