"""The ``prepare`` pipeline: load source chunks, encode them, write them, then mark the store complete.

Per-channel statistics (mean and std of the raw latents) are computed from what was written, so a
resumed run's statistics cover the chunks of the interrupted run too. Non-finite latents are refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, cast

import attrs
import numpy as np
import torch
import zarr
from tqdm import tqdm

from genflow.data.autoencoders import Autoencoder, Identity
from genflow.data.sources import Source, SourceBucket, SourceChunk, digest
from genflow.data.store import AutoencoderMeta, StoreMeta
from genflow.data.writer import BucketLayout, StoreWriter
from genflow.errors import GenflowError

#: Target size of one chunk of latents; chunks are also the unit of resuming and of shuffling.
CHUNK_BYTES = 4 << 20


@attrs.frozen(kw_only=True)
class PrepareResult:
    url: str
    count: int
    written: int
    seconds: float
    resumed: bool


def prepare_store(
    source: Source,
    autoencoder: Autoencoder,
    url: str,
    *,
    chunk: int = 0,
    flip: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> PrepareResult:
    """Write ``source`` through ``autoencoder`` to the store at ``url`` (resuming an unfinished one)."""
    start_time = time.perf_counter()
    if source.kind == "points" and not isinstance(autoencoder, Identity):
        raise GenflowError(f"dataset '{source.name}' holds points, not images; use --autoencoder identity")
    if flip and source.kind == "points":
        raise GenflowError("--flip needs an image dataset")
    if isinstance(autoencoder, Identity) and source.kind == "image":
        autoencoder = autoencoder.for_channels(source.channels)
    if source.kind == "image" and (source.channels, autoencoder.image_channels) not in ((1, 1), (3, 3), (1, 3)):
        raise GenflowError(
            f"autoencoder '{autoencoder.name}' takes {autoencoder.image_channels}-channel images but dataset "
            f"'{source.name}' gives {source.channels}; allowed: the same count, or grey images into a 3-channel "
            "autoencoder (imagefolder: --option channels=1 or 3)"
        )
    layouts = [_layout(b, source, autoencoder, chunk=chunk, flip=flip) for b in source.buckets()]
    meta = _meta(source, autoencoder, layouts)
    writer = StoreWriter(url, meta, layouts, overwrite=overwrite, storage_options=storage_options)
    todo = sum(layout.rows(c)[1] - layout.rows(c)[0] for layout in layouts for c in writer.pending(layout.key))
    with tqdm(total=todo, unit="img", desc=f"prepare {url}", disable=not progress, leave=False) as bar:
        for layout in layouts:
            for c in writer.pending(layout.key):
                start, stop = layout.rows(c)
                writer.write_chunk(
                    layout.key, c, _encode_chunk(source.load(layout.key, start, stop), source, autoencoder, layout)
                )
                bar.update(stop - start)
    writer.finish(channel_stats(writer.group, layouts))
    count = sum(layout.count for layout in layouts)
    return PrepareResult(
        url=url, count=count, written=todo, seconds=time.perf_counter() - start_time, resumed=writer.resumed
    )


def _layout(bucket: SourceBucket, source: Source, autoencoder: Autoencoder, *, chunk: int, flip: bool) -> BucketLayout:
    if bucket.pixel_size is None:
        sample_shape: tuple[int, ...] = (int(source.load(bucket.key, 0, 1).data.shape[1]),)
        dtype = "float32"
    else:
        height, width = bucket.pixel_size
        f = autoencoder.downsample
        if height % f or width % f:
            raise GenflowError(
                f"bucket {bucket.key} is not divisible by autoencoder '{autoencoder.name}' downsampling {f}; "
                f"use a resolution / multiple that is a multiple of {f}"
            )
        sample_shape = (autoencoder.latent_channels, height // f, width // f)
        dtype = autoencoder.latent_dtype
    sample_bytes = math.prod(sample_shape) * np.dtype(dtype).itemsize
    rows = chunk or int(np.clip(2 ** math.floor(math.log2(max(CHUNK_BYTES // sample_bytes, 1))), 16, 4096))
    return BucketLayout(
        key=bucket.key,
        count=bucket.count,
        sample_shape=sample_shape,
        dtype=dtype,
        chunk=min(rows, bucket.count),
        pixel_size=bucket.pixel_size,
        labels=source.has_labels,
        captions=source.has_captions,
        flip=flip,
    )


def _meta(source: Source, autoencoder: Autoencoder, layouts: list[BucketLayout]) -> StoreMeta:
    channels = layouts[0].sample_shape[0]
    if source.kind == "points":
        shift, scale = [0.0] * channels, [1.0] * channels
    else:
        shift, scale = autoencoder.shift_scale()
    ae = AutoencoderMeta(
        name=autoencoder.name,
        config=attrs.asdict(autoencoder.config),
        shift=shift,
        scale=scale,
        downsample=autoencoder.downsample if source.kind == "image" else 1,
    )
    plan = {
        "source": source.fingerprint(),
        "autoencoder": attrs.asdict(ae),
        "layouts": [attrs.asdict(layout) for layout in layouts],
    }
    return StoreMeta(
        sample_kind=source.kind,
        channels=channels,
        autoencoder=ae,
        source=source.describe(),
        num_classes=source.num_classes,
        classes=list(source.classes),
        plan=digest(plan),
    )


def _encode_chunk(chunk: SourceChunk, source: Source, autoencoder: Autoencoder, layout: BucketLayout) -> dict[str, Any]:
    """Arrays to write for one chunk: latents (+ flipped), labels, captions, source indices."""
    arrays: dict[str, Any] = {"source_index": chunk.index}
    if source.kind == "points":
        arrays["latents"] = _finite(chunk.data.astype(np.float32), autoencoder, layout, chunk)
    else:
        images = torch.from_numpy(np.ascontiguousarray(chunk.data)).permute(0, 3, 1, 2)  # (n, C, H, W)
        if images.shape[1] != autoencoder.image_channels:  # grey into an RGB autoencoder
            images = images.expand(-1, autoencoder.image_channels, -1, -1).contiguous()
        arrays["latents"] = _finite(autoencoder.encode(images).numpy(), autoencoder, layout, chunk)
        if layout.flip:
            mirrored = autoencoder.encode(images.flip(-1).contiguous()).numpy()
            arrays["latents_flip"] = _finite(mirrored, autoencoder, layout, chunk)
    if layout.labels:
        arrays["labels"] = chunk.labels
    if layout.captions:
        arrays["captions"] = np.array(chunk.captions, dtype=object)
    return arrays


def _finite(latents: np.ndarray, autoencoder: Autoencoder, layout: BucketLayout, chunk: SourceChunk) -> np.ndarray:
    if np.issubdtype(latents.dtype, np.floating) and not np.isfinite(latents).all():
        bad = int(chunk.index[int(np.flatnonzero(~np.isfinite(latents).reshape(len(latents), -1).all(1))[0])])
        raise GenflowError(
            f"autoencoder '{autoencoder.name}' produced non-finite latents (first at source sample {bad}, "
            f"bucket {layout.key}); refusing to store them (try dtype float32)"
        )
    expected = (len(chunk.index), *layout.sample_shape)
    if latents.shape != expected:
        raise GenflowError(
            f"autoencoder '{autoencoder.name}' returned latents of shape {latents.shape}, expected {expected}"
        )
    return latents.astype(layout.dtype, copy=False)


def channel_stats(group: zarr.Group, layouts: list[BucketLayout]) -> dict[str, Any]:
    """Per-channel mean / std of the raw latents of every bucket (float64 accumulation)."""
    total = 0
    sums: np.ndarray | None = None
    sq: np.ndarray | None = None
    for layout in layouts:
        bucket = cast(zarr.Group, cast(zarr.Group, group["buckets"])[layout.key])
        latents = cast(zarr.Array, bucket["latents"])
        for c in range(layout.num_chunks):
            start, stop = layout.rows(c)
            x = np.asarray(latents[start:stop], dtype=np.float64)
            x = x.reshape(x.shape[0], x.shape[1], -1)  # (n, C, h*w) or (n, D, 1)
            s, q = x.sum(axis=(0, 2)), (x * x).sum(axis=(0, 2))
            sums, sq = (s, q) if sums is None or sq is None else (sums + s, sq + q)
            total += x.shape[0] * x.shape[2]
    assert sums is not None and sq is not None, "channel_stats needs at least one chunk"
    mean = sums / total
    std = np.sqrt(np.maximum(sq / total - mean * mean, 0.0))
    return {"mean": mean.tolist(), "std": std.tolist(), "count": int(total)}
