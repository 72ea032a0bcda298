"""Reading latent stores: epoch plans, rank shards, a chunk cache, DataLoader workers, exact resume.

The sample order of epoch ``e`` is a pure function of ``(seed, e, global batch size)``: per bucket,
chunks are permuted, rows are permuted within windows of ``window`` consecutive (permuted) chunks,
and the result is cut into global batches; the buckets' batches are then interleaved in a random
order, so a bucket is chosen in proportion to its size and every batch comes from one bucket.
Rank ``k`` of ``W`` takes the ``k``-th of ``W`` equal slices of each global batch, so one rank with
batch ``W * B`` sees what ``W`` ranks with batch ``B`` see together. The position is the pair
(epoch, batch index); a loader restored from ``state_dict()`` yields exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genflow.data.store import Bucket, ChunkData, LatentStore, StoreMeta
from genflow.errors import GenflowError
from genflow.interfaces import Batch, BatchLoader, Condition, TextFn


@attrs.frozen(kw_only=True)
class ReadOptions:
    """``window``: chunks whose rows are shuffled together (more mixing, more memory);
    ``flip``: use ``latents_flip`` for a random half of the samples (when the store has it);
    ``normalize``: model space from the autoencoder's shift / scale, from the per-channel
    statistics (zero mean, unit std) or none (raw latents); ``drop_last``: drop each bucket's
    last partial global batch (training); otherwise it is split as evenly as possible."""

    shuffle: bool = True
    drop_last: bool = True
    window: int = 4
    flip: bool = False
    normalize: Literal["autoencoder", "stats", "none"] = "autoencoder"
    num_workers: int = 0


@attrs.frozen(kw_only=True)
class PlannedBatch:
    """One global batch: rows of ``bucket`` and, when flipping, which of them are mirrored."""

    bucket: str
    rows: np.ndarray
    flips: np.ndarray | None = None

    def shard(self, rank: int, world_size: int) -> PlannedBatch:
        """Rank ``rank``'s slice (equal slices; a partial batch is split as evenly as possible)."""
        rows = np.array_split(self.rows, world_size)[rank]
        flips = None if self.flips is None else np.array_split(self.flips, world_size)[rank]
        return PlannedBatch(bucket=self.bucket, rows=rows, flips=flips)


def epoch_plan(
    buckets: Sequence[Bucket], *, global_batch: int, seed: int, epoch: int, options: ReadOptions
) -> list[PlannedBatch]:
    """Every global batch of epoch ``epoch``, in order (see the module docstring)."""
    rng = np.random.default_rng([seed, epoch])
    per_bucket: list[list[PlannedBatch]] = []
    for bucket in buckets:
        order = _bucket_order(bucket, rng, options)
        flips = rng.random(len(order)) < 0.5 if options.flip else None
        stops = range(global_batch, len(order) + (1 if options.drop_last else global_batch), global_batch)
        per_bucket.append(
            [
                PlannedBatch(
                    bucket=bucket.key,
                    rows=order[stop - global_batch : stop],
                    flips=None if flips is None else flips[stop - global_batch : stop],
                )
                for stop in stops
            ]
        )
    # Interleave: a random sequence of bucket ids with each bucket's batch count, each bucket's
    # batches kept in order (so its chunk windows are read one after another).
    labels = np.concatenate([np.full(len(b), i) for i, b in enumerate(per_bucket)]).astype(np.int64)
    if options.shuffle:
        labels = rng.permutation(labels)
    cursors = [iter(b) for b in per_bucket]
    return [next(cursors[i]) for i in labels]


def _bucket_order(bucket: Bucket, rng: np.random.Generator, options: ReadOptions) -> np.ndarray:
    """The bucket's rows: chunks permuted, rows permuted within windows of chunks."""
    chunks = rng.permutation(bucket.num_chunks) if options.shuffle else np.arange(bucket.num_chunks)
    parts = []
    window = max(options.window, 1)  # 0 or less: each chunk shuffled on its own
    for w in range(0, len(chunks), window):
        rows = np.concatenate(
            [
                np.arange(c * bucket.chunk, min((c + 1) * bucket.chunk, bucket.count))
                for c in chunks[w : w + window]
            ]
        )
        parts.append(rng.permutation(rows) if options.shuffle else rows)
    return np.concatenate(parts).astype(np.int64)


@attrs.frozen(kw_only=True)
class RawBatch:
    """A batch before conditioning is encoded: model-space ``x``, labels, raw captions, and where
    the rows come from (``bucket``, bucket ``rows``, ``source_index`` when stored)."""

    x: Tensor
    labels: Tensor | None
    captions: list[str] | None
    bucket: str
    rows: np.ndarray
    source_index: np.ndarray | None = None

    def to_batch(self, condition: str = "labels", text_fn: TextFn | None = None) -> Batch:
        """``condition``: ``labels``, ``text`` (needs ``text_fn``) or ``none``."""
        if condition == "labels" and self.labels is not None:
            return Batch(x=self.x, cond=Condition(labels=self.labels))
        if condition == "text" and self.captions is not None and text_fn is not None:
            text, mask = text_fn(self.captions)
            return Batch(x=self.x, cond=Condition(text=text, text_mask=mask))
        return Batch(x=self.x)


def normalization(meta: StoreMeta, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(shift, scale)`` with model space ``(latents - shift) * scale``."""
    channels = meta.channels
    if mode == "autoencoder":
        shift, scale = meta.autoencoder.shift, meta.autoencoder.scale
    elif mode == "stats":
        shift = meta.stats["mean"]
        scale = [1.0 / max(s, 1e-6) for s in meta.stats["std"]]
    elif mode == "none":
        shift, scale = [0.0] * channels, [1.0] * channels
    else:
        raise GenflowError(f"normalize = '{mode}' is invalid; allowed: autoencoder, none, stats")
    return np.asarray(shift, dtype=np.float32), np.asarray(scale, dtype=np.float32)


class RowReader:
    """Reads rows of a store's buckets into model space through a per-bucket LRU chunk cache."""

    def __init__(self, store: LatentStore, *, normalize: str = "autoencoder", cache_chunks: int = 8) -> None:
        self.store = store
        self.shift, self.scale = normalization(store.meta, normalize)
        self.cache_chunks = max(cache_chunks, 1)
        self._cache: dict[str, OrderedDict[int, ChunkData]] = {}

    def chunk(self, key: str, index: int) -> ChunkData:
        cache = self._cache.setdefault(key, OrderedDict())
        if index in cache:
            cache.move_to_end(index)
            return cache[index]
        data = cache[index] = self.store.buckets[key].read(index)
        while len(cache) > self.cache_chunks:
            cache.popitem(last=False)
        return data

    def read(self, key: str, rows: np.ndarray, flips: np.ndarray | None = None, *, raw: bool = False) -> RawBatch:
        """Rows ``rows`` of bucket ``key`` (any order); ``flips`` selects mirrored latents; ``raw``
        keeps ``x`` as stored latents (see :meth:`to_model`)."""
        bucket = self.store.buckets[key]
        latents = np.empty((len(rows), *bucket.sample_shape), dtype=bucket.arrays["latents"].dtype)
        labels = np.empty(len(rows), dtype=np.int64) if "labels" in bucket.arrays else None
        captions: np.ndarray | None = np.empty(len(rows), dtype=object) if "captions" in bucket.arrays else None
        index = np.empty(len(rows), dtype=np.int64) if "source_index" in bucket.arrays else None
        use_flip = flips is not None and "latents_flip" in bucket.arrays
        chunk_ids = rows // bucket.chunk
        for c in np.unique(chunk_ids):
            data = self.chunk(key, int(c))
            where = chunk_ids == c
            local = rows[where] - data.start
            latents[where] = data.latents[local]
            if use_flip:
                assert data.latents_flip is not None  # the bucket has latents_flip, so every chunk does
                mirrored = where & flips
                latents[mirrored] = data.latents_flip[rows[mirrored] - data.start]
            for out, source in ((labels, data.labels), (captions, data.captions), (index, data.source_index)):
                if out is not None:
                    assert source is not None  # out exists only when the bucket has the array
                    out[where] = source[local]
        return RawBatch(
            x=torch.from_numpy(latents) if raw else self.to_model(latents),
            labels=None if labels is None else torch.from_numpy(labels),
            captions=None if captions is None else [str(c) for c in captions],
            bucket=key,
            rows=rows,
            source_index=index,
        )

    def to_model(self, latents: np.ndarray | Tensor) -> Tensor:
        """Stored latents -> float32 model space ``(latents - shift) * scale``."""
        latents = latents.numpy() if isinstance(latents, Tensor) else latents
        shape = (-1,) + (1,) * (latents.ndim - 2)  # per channel: (C, 1, 1) or (D,)
        x = (latents.astype(np.float32) - self.shift.reshape(shape)) * self.scale.reshape(shape)
        return torch.from_numpy(x)


class StoreLoader(BatchLoader):
    """Per-rank batches of a store, endless over epochs; see the module docstring."""

    def __init__(
        self,
        store: LatentStore,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        options: ReadOptions = ReadOptions(),
        condition: str = "labels",
        text_fn: TextFn | None = None,
    ) -> None:
        if batch_size < 1 or not 0 <= rank < world_size:
            raise GenflowError(f"invalid loader: batch_size {batch_size}, rank {rank}, world_size {world_size}")
        self.store = store
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.global_batch = batch_size * world_size
        self.options = options
        self.condition = condition
        self.text_fn = text_fn
        self.epoch, self.position = 0, 0
        self._plan_cache: tuple[int, list[PlannedBatch]] | None = None
        counts = [b.count for b in store.buckets.values()]
        g = self.global_batch
        # Constant over epochs: it depends on bucket sizes only.
        self.batches_per_epoch = sum(n // g if options.drop_last else -(-n // g) for n in counts)
        if self.batches_per_epoch == 0:
            raise GenflowError(
                f"store '{store.url}': no bucket holds a full global batch of {self.global_batch} samples "
                f"(largest bucket: {store.largest_bucket().count}); use a smaller batch size"
            )

    def plan(self, epoch: int) -> list[PlannedBatch]:
        """The global batches of ``epoch`` (cached for the current epoch)."""
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            buckets = list(self.store.buckets.values())
            plan = epoch_plan(
                buckets, global_batch=self.global_batch, seed=self.seed, epoch=epoch, options=self.options
            )
            self._plan_cache = (epoch, plan)
        return self._plan_cache[1]

    def __iter__(self) -> Iterator[Batch]:
        for raw in self.iter_raw():
            yield raw.to_batch(self.condition, self.text_fn)

    def iter_raw(self) -> Iterator[RawBatch]:
        """Like ``iter(self)`` but yields :class:`RawBatch` (with raw captions and row origins)."""
        source = self._worker_batches() if self.options.num_workers > 0 else self._local_batches()
        for raw in source:
            self.epoch, self.position = divmod(self._linear + 1, self.batches_per_epoch)
            yield raw

    @property
    def _linear(self) -> int:
        return self.epoch * self.batches_per_epoch + self.position

    def _local_batches(self) -> Iterator[RawBatch]:
        reader = RowReader(self.store, normalize=self.options.normalize, cache_chunks=2 * self.options.window)
        linear = self._linear
        while True:
            yield _read_planned(self, reader, linear)
            linear += 1

    def _worker_batches(self) -> Iterator[RawBatch]:
        stream = _WorkerStream(self, start=self._linear)
        loader = DataLoader(stream, batch_size=None, num_workers=self.options.num_workers, collate_fn=_passthrough)
        # Workers send stored latents (uint8 for pixels: 4x less than float32 through shared memory).
        normalizer = RowReader(self.store, normalize=self.options.normalize, cache_chunks=1)
        for item in loader:
            if isinstance(item, _Failure):
                raise GenflowError(item.message)
            yield _unpack(item, normalizer)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "global_batch": self.global_batch, "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state["global_batch"]) != self.global_batch or int(state["seed"]) != self.seed:
            raise GenflowError(
                f"cannot resume the data position: it was saved with global batch {state['global_batch']} and seed "
                f"{state['seed']}, this run has {self.global_batch} and {self.seed} (the sample order would differ)"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def _read_planned(loader: StoreLoader, reader: RowReader, linear: int, *, raw: bool = False) -> RawBatch:
    epoch, position = divmod(linear, loader.batches_per_epoch)
    planned = loader.plan(epoch)[position].shard(loader.rank, loader.world_size)
    return reader.read(planned.bucket, planned.rows, planned.flips, raw=raw)


@attrs.frozen
class _Failure:
    """A ``GenflowError`` raised in a worker, passed to the main process as one line."""

    message: str


def _passthrough(item: Any) -> Any:
    return item


def _pack(batch: RawBatch) -> dict[str, Any]:
    """Numpy arrays only: they cross the worker queue as pickled bytes, cheaper than torch
    tensors' shared-memory segments for batches this small."""
    fields = {f.name: getattr(batch, f.name) for f in attrs.fields(RawBatch)}
    fields["x"] = batch.x.numpy()
    fields["labels"] = None if batch.labels is None else batch.labels.numpy()
    return fields


def _unpack(fields: dict[str, Any], normalizer: RowReader) -> RawBatch:
    labels = None if fields["labels"] is None else torch.from_numpy(fields["labels"])
    return RawBatch(**{**fields, "x": normalizer.to_model(fields["x"]), "labels": labels})


class _WorkerStream(IterableDataset):
    """Worker ``w`` of ``n`` reads the batches ``start + w``, ``start + w + n``, ...; the
    DataLoader returns workers' batches round-robin, which restores the plan's order."""

    def __init__(self, loader: StoreLoader, *, start: int) -> None:
        self.loader = loader
        self.start = start

    def __iter__(self) -> Iterator[dict[str, Any] | _Failure]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        options = self.loader.options
        # A store of its own per worker: file handles inherited through fork must not be shared.
        store = self.loader.store.reopen()
        reader = RowReader(store, normalize=options.normalize, cache_chunks=2 * options.window)
        linear = self.start + worker
        while True:
            try:
                yield _pack(_read_planned(self.loader, reader, linear, raw=True))
            except GenflowError as exc:
                yield _Failure(str(exc))
                return
            linear += workers
