"""Shared pieces of the benchmarks: a random-data plugin, the real trainer without its loop, timers,
FLOP counting, environment records, tables and incremental JSON.

Every benchmark drives the code users run: ``BenchTrainer`` inherits ``Trainer.train_step`` and
``Trainer._build_model`` unchanged and only skips what a timed step does not need (data loading,
logging, checkpoints), so a timed step is ``objective.loss`` + ``backward`` + clip + AdamW + EMA.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import pathlib
import platform
import statistics
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import _paths  # noqa: F401  (genflow importable from a bare checkout)
import attrs
import torch
from genflow_tim.objective import REFERENCE_MIXTURE
from torch.utils.flop_counter import FlopCounterMode

from genflow.commands.timing import (  # noqa: F401  (moved into the package; the benchmarks use them from here)
    cpu_and_wall,
    interleaved,
    peak_memory,
    summary,
    synchronize,
    table,
    time_calls,
    wall_time,
)
from genflow.config import RunConfig, resolve
from genflow.interfaces import Batch, BatchLoader, Condition, Dataset, DataSpec
from genflow.plugins import PluginManager, hookimpl
from genflow.registry import Component
from genflow.train.distributed import World, init_world
from genflow.train.ema import EMA
from genflow.train.trainer import Trainer, build_optimizer

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
RANDOM_DATASET = "bench-random"

# --------------------------------------------------------------------------------------------
# Random data as a dataset plugin (no disk, no download: shapes only matter for speed)
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RandomDataConfig:
    """``(channels, resolution, resolution)`` Gaussian samples with ``num_classes`` labels."""

    channels: int = 3
    resolution: int = 32
    num_classes: int = 16


class RandomLoader(BatchLoader):
    """Endless seeded random batches (stateless apart from the batch counter)."""

    def __init__(self, dataset: RandomData, batch_size: int, seed: int) -> None:
        self.dataset, self.batch_size, self.seed, self.index = dataset, batch_size, seed, 0

    def __iter__(self) -> Iterator[Batch]:
        while True:
            self.index += 1
            yield self.dataset.reference(self.batch_size, seed=self.seed * 1_000_003 + self.index)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.index = int(state["index"])


class RandomData(Dataset):
    """Standard-normal images with uniform labels: the benchmark data of every speed figure."""

    def __init__(self, config: RandomDataConfig) -> None:
        self.spec = DataSpec(shape=(config.channels, config.resolution, config.resolution),
                             num_classes=config.num_classes)

    def loader(self, *, batch_size: int, rank: int, world_size: int, seed: int) -> BatchLoader:
        return RandomLoader(self, batch_size, seed * 7919 + rank)

    def reference(self, n: int, *, seed: int) -> Batch:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn((n, *self.spec.shape), generator=generator)
        if not self.spec.num_classes:
            return Batch(x=x)
        labels = torch.randint(0, self.spec.num_classes, (n,), generator=generator)
        return Batch(x=x, cond=Condition(labels=labels))


class BenchPlugin:
    """The benchmarks' own plugin: registers the ``bench-random`` dataset."""

    @hookimpl
    def genflow_datasets(self) -> list[Component]:
        return [Component(name=RANDOM_DATASET, config=RandomDataConfig,
                          build=lambda config, **_: RandomData(config),
                          description="random Gaussian images (benchmarks only)")]


def plugin_manager() -> PluginManager:
    """Built-in plugins plus ``bench-random`` (entry points off: only shipped code is measured)."""
    manager = PluginManager(autoload=False)
    manager.register(BenchPlugin(), name="genflow_bench")
    return manager


# --------------------------------------------------------------------------------------------
# Configs and the trainer
# --------------------------------------------------------------------------------------------

#: Backbone settings per benchmark preset; ``data`` is (channels, resolution).
PRESETS: dict[str, dict[str, Any]] = {
    "unet": {"backbone": {"name": "unet"}, "data": (3, 32)},
    "debug": {"backbone": {"name": "tim-dit", "preset": "debug"}, "data": (4, 16)},
    # RGB data for the REPA modes (the encoder reads pixels): 16x16 tokens, as ImageNet-256 at XL/2
    "debug-rgb": {"backbone": {"name": "tim-dit", "preset": "debug"}, "data": (3, 32)},
    "B/4-rgb": {"backbone": {"name": "tim-dit", "preset": "B/4"}, "data": (3, 32)},
    "S": {"backbone": {"name": "tim-dit", "preset": "S"}, "data": (4, 32)},
    "B/4": {"backbone": {"name": "tim-dit", "preset": "B/4"}, "data": (4, 32)},
    "XL/2": {"backbone": {"name": "tim-dit", "preset": "XL/2"}, "data": (4, 32)},
}

#: The training modes compared side by side: objective and derivative tables of the config.
#: ``fm`` is genflow's flow-matching objective; ``tim-fm`` is the TiM objective with every row
#: ``r = t`` (the reference's "fm": same loss code, no derivative). ``dde`` is the central DDE
#: (passes in the model's precision: bf16 under autocast, as the reference) with the reference's
#: mixture (half the rows ``r = t``, a tenth ``r = 0``), pinned so that its cost compares with the
#: reference's runs; ``dde-fp32`` the same with fp32 passes, ``dde1`` the one-sided DDE reusing the
#: main pass, ``dde-0.7`` the central DDE with ``diffusion_ratio`` 0.7 (genflow's default mixture:
#: fewer interval rows to differentiate), ``dde1-0.7`` the one-sided DDE with it (the CPU presets').
#: ``dde-repa``: ``dde`` plus representation alignment (weight 1.0, the backbone's projector to 768
#: after block 1, the frozen random encoder: it costs the projector, the loss and a small encoder,
#: not RADIO's forward); needs RGB data (``debug-rgb``, ``B/4-rgb``).
MODES: dict[str, dict[str, dict[str, Any]]] = {
    "fm": {"objective": {"name": "fm"}, "derivative": {"name": "dde"}},
    "tim-fm": {"objective": {"name": "tim", "diffusion_ratio": 1.0, "consistency_ratio": 0.0},
               "derivative": {"name": "dde"}},
    "dde": {"objective": {"name": "tim", **REFERENCE_MIXTURE}, "derivative": {"name": "dde"}},
    "dde-fp32": {"objective": {"name": "tim", **REFERENCE_MIXTURE}, "derivative": {"name": "dde", "precision": "fp32"}},
    "dde1": {"objective": {"name": "tim", **REFERENCE_MIXTURE}, "derivative": {"name": "dde", "stencil": "one-sided"}},
    "dde-0.7": {"objective": {"name": "tim", "diffusion_ratio": 0.7}, "derivative": {"name": "dde"}},
    "dde1-0.7": {"objective": {"name": "tim", "diffusion_ratio": 0.7},
                 "derivative": {"name": "dde", "stencil": "one-sided"}},
    "jvp": {"objective": {"name": "tim", **REFERENCE_MIXTURE}, "derivative": {"name": "jvp"}},
    "dde-repa": {"objective": {"name": "tim", **REFERENCE_MIXTURE, "repa_weight": 1.0, "repa_encoder": "random"},
                 "derivative": {"name": "dde"}, "backbone": {"projector_out": 768, "projector_depth": 1}},
}


def run_config(manager: PluginManager, *, preset: str, mode: str, batch: int, device: str,
               precision: str = "fp32", compile: bool = False, fsdp_bf16: bool = False,
               num_classes: int = 16, backbone_options: Mapping[str, Any] | None = None,
               data: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None) -> RunConfig:
    """A resolved run config for ``preset`` x ``mode`` with the reference's optimiser (docs/math.md s10).

    ``data`` replaces the random-data table (e.g. ``{"name": "shapes", ...}``); ``train`` and
    ``backbone_options`` update the trainer and backbone tables."""
    spec = PRESETS[preset]
    channels, resolution = spec["data"]
    random_data = {"name": RANDOM_DATASET, "channels": channels, "resolution": resolution,
                   "num_classes": num_classes}
    raw: dict[str, Any] = {
        "data": dict(data) if data is not None else random_data,
        "backbone": {**spec["backbone"], **MODES[mode].get("backbone", {}), **(backbone_options or {})},
        **{slot: dict(options) for slot, options in MODES[mode].items() if slot != "backbone"},
        "train": {"batch_size": batch, "device": device, "precision": precision, "compile": compile,
                  "fsdp_mixed_precision": fsdp_bf16, "lr": 1e-4, "betas": [0.9, 0.95], "eps": 1e-6,
                  "weight_decay": 0.01, "grad_clip": 1.0, "ema_decay": [0.9999], **(train or {})},
    }
    return resolve(raw, manager)


@attrs.frozen(kw_only=True)
class SingleRankFsdp(World):
    """A one-process world that still takes the distributed path: FSDP2 wrapping of every unit and
    the all-reduces of ``train_step`` (needs an initialised process group of size 1)."""

    @property
    def distributed(self) -> bool:
        return True


class BenchTrainer(Trainer):
    """``Trainer`` without loader, logger and checkpoints (mirrors ``Trainer.__init__``); the model
    build (``_build_model``: meta init, FSDP2, per-block compile) and ``train_step`` are inherited."""

    def __init__(self, config: RunConfig, manager: PluginManager, *, world: World | None = None) -> None:
        from genflow.components.build import build_components

        self.config, self.train, self.manager = config, config.train, manager
        self.world = world or init_world(self.train.device)
        self._check_batch()
        self.components = build_components(config, manager)
        self.model = self._build_model()
        self.optimizer, self.scheduler = build_optimizer(self.model, self.train)
        self.ema = EMA(self.model, self.train.ema_decay)
        self.step = 0
        self.model.train()

    def batch(self, seed: int = 0) -> Batch:
        """One random batch of ``train.batch_size`` on the trainer's device."""
        batch = self.components.dataset.reference(self.train.batch_size, seed=seed)
        return Batch(x=batch.x.to(self.world.device), cond=batch.cond.to(self.world.device))

    def stepper(self) -> Callable[[], None]:
        """A closure running one real ``train_step`` (a new step index each call, like ``run``)."""
        batch, generator = self.batch(), torch.Generator(self.world.device)

        def step() -> None:
            self.train_step(batch, generator)
            self.step += 1

        return step


def fsdp_world(device: torch.device) -> SingleRankFsdp:
    """Initialise a world-size-1 process group in-process (NCCL on CUDA, gloo on CPU)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    return SingleRankFsdp(rank=0, world_size=1, local_rank=0, device=device)


# --------------------------------------------------------------------------------------------
# Timing, memory and FLOPs
# --------------------------------------------------------------------------------------------


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as ``torch.utils.flop_counter`` counts them (matmuls, convs,
    attention; forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def allocated_gib(device: torch.device) -> float | None:
    """GiB currently allocated by tensors on a CUDA ``device`` (``None`` elsewhere)."""
    return torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def matmul_rate(device: torch.device, *, size: int = 8192, repeats: int = 20) -> float:
    """Measured dense bf16 matmul rate (FLOP/s) of ``size^3`` products: the card's practical peak."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = time_calls(lambda: a @ b, device=device, warmup=3, repeats=repeats)
    return 2 * size**3 / statistics.median(times)


# --------------------------------------------------------------------------------------------
# Records: environment, JSON, tables
# --------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict[str, Any]:
    """Card, torch / CUDA versions, CPU count and the UTC date of a result."""
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(card=props.name, cuda=torch.version.cuda, memory_gib=props.total_memory / 2**30,
                   cudnn=torch.backends.cudnn.version())
    else:
        env["card"] = f"CPU ({platform.processor() or platform.machine()})"
    return env


def json_dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def write_json(path: pathlib.Path, data: Any) -> None:
    """Write atomically (a partial file never replaces a good one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json_dumps(data) + "\n")
    tmp.replace(path)


def out_dir(arg: str | None) -> pathlib.Path:
    """``--out``, else ``$OUT``, else ``benchmarks/results``."""
    return pathlib.Path(arg or os.environ.get("OUT") or RESULTS)
