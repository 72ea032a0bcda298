"""``genflow check PATH``: check a latent store or a run folder on demand, reading everything.

A store is opened as training opens it (metadata against arrays: dtypes, shapes, label range,
buckets, completion, codecs), then every chunk of every array is decoded. A run folder's config is
resolved (its data store opened), and its final weights and every checkpoint's EMA weights are
loaded (never unpickled: see :mod:`genflow.train.safe_load`) and must be finite. The first problem is
one line and exit 2; a sound PATH prints what was checked and exits 0.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import torch

from genflow.config import RunConfig
from genflow.errors import GenflowError
from genflow.plugins import PluginManager


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a latent store (path or URL) or a run folder")


def run(args: argparse.Namespace, manager: PluginManager) -> int:
    path = pathlib.Path(args.path)
    if "://" not in args.path and "::" not in args.path and not path.exists():
        raise GenflowError(f"'{args.path}' does not exist; give a latent store (path or URL) or a run folder")
    if (path / "config.toml").is_file():
        for line in check_run(path, manager):
            print(line)
    else:
        print(check_store(args.path))
    return 0


def check_store(url: str) -> str:
    """Open the store at ``url`` and decode every chunk; a summary line, or a ``GenflowError``."""
    from genflow.data.store import LatentStore

    store = LatentStore(url)
    chunks = 0
    for bucket in store.buckets.values():  # opening checked the labels; now every chunk decodes
        for index in range(bucket.num_chunks):
            bucket.read(index)
            chunks += 1
    arrays = sorted({name for b in store.buckets.values() for name in b.arrays})
    return (f"genflow check: store '{url}' is sound: {store.count} samples ({store.meta.sample_kind}) in "
            f"{len(store.buckets)} bucket(s), {chunks} chunk(s) of {', '.join(arrays)} decoded")


def check_run(run_dir: pathlib.Path, manager: PluginManager) -> list[str]:
    """Load the run's final weights and every checkpoint's EMA weights; a line per file checked."""
    from genflow.sampling.runs import FINAL_WEIGHTS, load_run
    from genflow.train.checkpoint import list_checkpoints

    lines = []
    steps: list[int | None] = [None] if (run_dir / FINAL_WEIGHTS).is_file() else []
    steps += [step for step, _ in list_checkpoints(run_dir)]
    if not steps:
        raise GenflowError(f"run folder '{run_dir}' has neither {FINAL_WEIGHTS} nor a checkpoint to check")
    for step in steps:
        run = load_run(run_dir, manager, step=step)
        bad = [name for name, p in run.backbone.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise GenflowError(f"run folder '{run_dir}': the weights of {run.source} hold non-finite values "
                               f"(first: {bad[0]})")
        lines.append(f"genflow check: {run_dir}/{run.source}: loads, finite")
    lines.append(f"genflow check: run folder '{run_dir}' is sound ({len(steps)} weight file(s))")
    return lines


# ------------------------------------------------------------------------------------------------
# before a training run starts
# ------------------------------------------------------------------------------------------------


def check_writable(run_dir: pathlib.Path, *, resume: bool) -> None:
    """The run folder (or, when it does not exist yet, the folder it will be created in) and, when
    resuming, its checkpoints and weights can be written: found before training, not at the first
    checkpoint. Checked with ``os.access`` (nothing is written)."""
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    targets = [existing]
    if resume:
        targets += [p for p in (run_dir / "checkpoints", run_dir / "model.pt", run_dir / "metrics.jsonl",
                                run_dir / "config.toml") if p.exists()]
    for path in targets:
        mode = os.W_OK | (os.X_OK if path.is_dir() else 0)
        if not os.access(path, mode):
            what = "folder" if path.is_dir() else "file"
            raise GenflowError(f"--run-dir '{run_dir}': the {what} '{path}' is not writable; training could not "
                               "save checkpoints there (change its permissions or choose another --run-dir)")


def check_start(config: RunConfig, manager: PluginManager) -> None:
    """What ``genflow train`` builds before its first step, built without writing: the batch split,
    the data (a store is opened and checked against its metadata), the other components and the
    backbone (on the meta device, so any size is cheap)."""
    from genflow.components.build import build_backbone, build_components

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    parts = world_size * config.train.grad_accumulation
    if config.train.batch_size % parts:
        raise GenflowError(f"train.batch_size = {config.train.batch_size} is not divisible by ranks x "
                           f"train.grad_accumulation = {parts}; use a multiple of {parts}")
    if config.data.name == "shapes" and not _shapes_cached(config):
        print("genflow: dry run: the shapes store is prepared on first use; its data is not opened",
              file=sys.stderr)
        return
    components = build_components(config, manager)
    build_backbone(config, manager, components.spec, meta=True)


def _shapes_cached(config: RunConfig) -> bool:
    from genflow.components.build import cache_dir
    from genflow.data.dataset import generator_config, shapes_store_path

    return (shapes_store_path(generator_config(config.data.options), cache_dir()) / "zarr.json").is_file()
