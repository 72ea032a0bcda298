"""Small stores for the data tests (tiny resolutions and counts keep the suite fast)."""

from __future__ import annotations

import itertools

from genflow.data.autoencoders import Identity
from genflow.data.pipeline import prepare_store
from genflow.data.shapes import ShapesConfig
from genflow.data.sources import ShapesSource


def small_shapes(**fields) -> ShapesConfig:
    base = {"resolution": 16, "count": 150}
    return ShapesConfig(**{**base, **fields})


def write_shapes(url: str, *, chunk: int = 32, flip: bool = False, **fields) -> ShapesSource:
    """Prepare a small shapes store at ``url``; returns its source (the oracle)."""
    source = ShapesSource(small_shapes(**fields))
    prepare_store(source, Identity(), url, chunk=chunk, flip=flip, progress=False)
    return source


def take(loader, n: int, raw: bool = True) -> list:
    """The next ``n`` batches (``RawBatch`` when ``raw``)."""
    return list(itertools.islice(loader.iter_raw() if raw else iter(loader), n))
