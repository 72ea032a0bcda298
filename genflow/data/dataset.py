"""The ``store`` and ``shapes`` datasets: a prepared latent store behind the ``Dataset`` interface.

``store`` reads any store written by ``genflow prepare``. ``shapes`` prepares its store on first
use into ``cache_dir`` (keyed by a hash of the generator config, under a file lock so concurrent
ranks prepare it once) and then reads it like ``store``.

Conditioning: ``condition = "auto"`` uses class labels when the store has them, else captions, else
nothing. Captions reach the model through ``dataset.text_fn`` (``captions -> (text, text_mask)``),
which the text-to-image wiring sets; raw captions are available from ``loader.iter_raw()`` and
:meth:`StoreDataset.reference_raw`.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch
from filelock import FileLock
from torch import Tensor

from genflow.data.autoencoders import Autoencoder, Identity, build_builtin
from genflow.data.dataset_config import ShapesDatasetConfig, StoreConfig
from genflow.data.pipeline import prepare_store
from genflow.data.reader import RawBatch, ReadOptions, RowReader, StoreLoader, normalization
from genflow.data.shapes import ShapesConfig
from genflow.data.sources import ShapesSource, digest
from genflow.data.store import LatentStore
from genflow.errors import GenflowError
from genflow.interfaces import Batch, Dataset, DataSpec


def read_options(config: StoreConfig | ShapesDatasetConfig) -> ReadOptions:
    """How a dataset's store is read (``shapes`` stores hold no mirrored latents: no ``flip``)."""
    return ReadOptions(
        window=config.window,
        flip=isinstance(config, StoreConfig) and config.flip,
        normalize=config.normalize,
        num_workers=config.num_workers,
    )


class StoreDataset(Dataset):
    """A complete latent store as a ``Dataset``; ``spec.shape`` is the largest bucket's sample shape."""

    def __init__(self, store: LatentStore, *, options: ReadOptions = ReadOptions(), condition: str = "auto") -> None:
        self.store = store
        self.options = options
        self.condition = _resolve_condition(store, condition)
        self.autoencoder: Autoencoder | None = None  # built on first decode unless set
        largest = store.largest_bucket()
        self.spec = DataSpec(
            shape=largest.sample_shape,
            num_classes=store.meta.num_classes if self.condition == "labels" else 0,
            text=self.condition == "text",
        )

    @property
    def classes(self) -> list[str]:
        return list(self.store.meta.classes)

    def loader(self, *, batch_size: int, rank: int, world_size: int, seed: int) -> StoreLoader:
        return StoreLoader(
            self.store,
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            seed=seed,
            options=self.options,
            condition=self.condition,
            text_fn=self.text_fn,
        )

    def reference_raw(self, n: int, *, seed: int) -> RawBatch:
        """``n`` random samples of the largest bucket (with replacement only when it is smaller)."""
        bucket = self.store.largest_bucket()
        rows = np.random.default_rng(seed).choice(bucket.count, size=n, replace=n > bucket.count)
        reader = RowReader(self.store, normalize=self.options.normalize, cache_chunks=1)  # one pass, chunk by chunk
        return reader.read(bucket.key, rows.astype(np.int64))

    def reference(self, n: int, *, seed: int) -> Batch:
        return self.reference_raw(n, seed=seed).to_batch(self.condition, self.text_fn)

    def decode(self, x: Tensor) -> Tensor:
        """Model space -> pixels in [-1, 1]: undo the normalisation, then the autoencoder's decoder."""
        if self.store.meta.sample_kind != "image":
            return x
        shift, scale = (torch.from_numpy(a).to(x) for a in normalization(self.store.meta, self.options.normalize))
        latents = x / scale.view(-1, 1, 1) + shift.view(-1, 1, 1)
        if self.autoencoder is None:
            ae = self.store.meta.autoencoder
            self.autoencoder = Identity() if ae.name == "identity" else build_builtin(ae.name, ae.config)
        return self.autoencoder.decode(latents)


def _resolve_condition(store: LatentStore, condition: str) -> str:
    if condition == "auto":
        return "labels" if store.has_labels else "text" if store.has_captions else "none"
    available = {"labels": store.has_labels, "text": store.has_captions, "none": True}
    if condition not in available:
        raise GenflowError(f"condition = '{condition}' is invalid; allowed: auto, labels, none, text")
    if not available[condition]:
        what = "labels" if condition == "labels" else "captions"
        raise GenflowError(f"condition = '{condition}' but store '{store.url}' has no {what}")
    return condition


def build_store(config: StoreConfig, *, cache_dir: Path | None = None) -> StoreDataset:
    """The ``store`` dataset (``cache_dir`` is not used: ``genflow prepare`` wrote the store)."""
    if not config.url:
        raise GenflowError("dataset 'store' needs a url: set data.url (a path, memory://, zip::, s3://, ...)")
    return StoreDataset(LatentStore(config.url), options=read_options(config), condition=config.condition)


def build_shapes(config: ShapesDatasetConfig, *, cache_dir: Path) -> StoreDataset:
    """The ``shapes`` dataset: prepared into ``cache_dir`` on first use, then read."""
    url = shapes_store(generator_config(config), cache_dir)
    return StoreDataset(LatentStore(url), options=read_options(config), condition=config.condition)


def generator_config(config: ShapesConfig) -> ShapesConfig:
    """The generator part of a ``shapes`` config (what decides the images)."""
    return ShapesConfig(**{f.name: getattr(config, f.name) for f in attrs.fields(ShapesConfig)})


def shapes_store_path(config: ShapesConfig, cache_dir: Path) -> Path:
    """Where the ``shapes`` store of ``config`` is cached in ``cache_dir`` (it may not exist yet)."""
    return Path(cache_dir).expanduser() / f"shapes-{digest(attrs.asdict(config))[:16]}.zarr"


def shapes_store(config: ShapesConfig, cache_dir: Path) -> str:
    """The path of a complete ``shapes`` store for ``config``, prepared if needed."""
    path = shapes_store_path(config, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        try:
            LatentStore(str(path))
        except GenflowError:
            prepare_store(ShapesSource(config), Identity(), str(path), overwrite=True, progress=True)
    return str(path)
