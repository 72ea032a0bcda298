"""Sources of ``genflow prepare``: where samples come from before they are encoded and stored.

A source lists its buckets and loads rows ``start:stop`` of a bucket as ``uint8`` images
``(n, H, W, C)`` (``C`` = ``channels``: 3, or 1 for grey images) or float points ``(n, D)``, with
optional labels, captions and source indices.
Loading is deterministic, so a resumed ``prepare`` writes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import abc
import hashlib
import json
from typing import Any, Literal

import attrs
import numpy as np
import torch

from genflow.config.domains import non_negative, positive
from genflow.data.buckets import POINTS_BUCKET, bucket_key
from genflow.data.shapes import (
    ShapesConfig,
    class_names,
    image_size,
    render_scenes,
    scene_attributes,
    validate,
)
from genflow.data.toy2d import Toy2D, Toy2DConfig
from genflow.errors import GenflowError


@attrs.frozen(kw_only=True)
class SourceBucket:
    """``count`` samples of pixel size ``pixel_size`` (``None`` for points) under ``key``."""

    key: str
    count: int
    pixel_size: tuple[int, int] | None


@attrs.frozen(kw_only=True)
class SourceChunk:
    """Loaded rows: ``data`` is ``uint8`` ``(n, H, W, C)`` images or float32 ``(n, D)`` points."""

    data: np.ndarray
    index: np.ndarray
    labels: np.ndarray | None = None
    captions: list[str] | None = None


class Source(abc.ABC):
    """A dataset ``genflow prepare`` can write."""

    name: str
    kind: Literal["image", "points"] = "image"
    config: Any
    num_classes: int = 0
    classes: list[str] = []
    has_captions: bool = False
    #: Image channels of loaded data (3: RGB, 1: grey).
    channels: int = 3

    @abc.abstractmethod
    def buckets(self) -> list[SourceBucket]: ...

    @abc.abstractmethod
    def load(self, key: str, start: int, stop: int) -> SourceChunk: ...

    @property
    def has_labels(self) -> bool:
        return self.num_classes > 0

    def describe(self) -> dict[str, Any]:
        """JSON description stored in the store's ``source`` attribute."""
        return {"dataset": self.name, "config": _jsonable(attrs.asdict(self.config))}

    def fingerprint(self) -> str:
        """Identifies the exact samples this source produces (for resuming)."""
        return digest(self.describe())


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def digest(value: Any) -> str:
    """A short stable hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ShapesSource(Source):
    """The procedural ``shapes`` dataset; rows are in index order within each bucket."""

    name = "shapes"

    def __init__(self, config: ShapesConfig) -> None:
        validate(config)
        self.config = config
        self.classes = class_names(config)
        self.num_classes = len(self.classes)
        self.has_captions = True
        self._indices = self._bucket_indices()

    def _bucket_indices(self) -> dict[tuple[int, int], np.ndarray]:
        c = self.config
        if len(c.aspect_ratios) == 1:
            return {image_size(c, c.aspect_ratios[0]): np.arange(c.count, dtype=np.int64)}
        sizes = [self._size(index) for index in range(c.count)]
        table: dict[tuple[int, int], list[int]] = {}
        for index, size in enumerate(sizes):
            table.setdefault(size, []).append(index)
        return {size: np.asarray(rows, dtype=np.int64) for size, rows in sorted(table.items())}

    def _size(self, index: int) -> tuple[int, int]:
        # The first draw of a scene's generator picks its aspect ratio (see scene_attributes).
        rng = np.random.default_rng([self.config.seed, index])
        return image_size(self.config, self.config.aspect_ratios[int(rng.integers(len(self.config.aspect_ratios)))])

    def buckets(self) -> list[SourceBucket]:
        return [
            SourceBucket(key=bucket_key(*size), count=len(rows), pixel_size=size)
            for size, rows in self._indices.items()
        ]

    def load(self, key: str, start: int, stop: int) -> SourceChunk:
        rows = next(rows for size, rows in self._indices.items() if bucket_key(*size) == key)[start:stop]
        scenes = [scene_attributes(self.config, int(i)) for i in rows]
        labels = np.array([s.label for s in scenes], dtype=np.int64) if self.num_classes else None
        return SourceChunk(data=render_scenes(scenes), index=rows, labels=labels, captions=[s.caption for s in scenes])


@attrs.frozen(kw_only=True)
class Toy2DSourceConfig:
    """``count`` points of the ``toy2d`` distribution ``kind``, drawn with ``seed``."""

    kind: Literal["gaussians8", "checkerboard", "rings", "gaussian"] = "gaussians8"
    radius: float = attrs.field(default=2.0, validator=positive(integer=False))
    std: float = attrs.field(default=0.2, validator=positive(integer=False))
    count: int = attrs.field(default=20000, validator=positive())
    seed: int = attrs.field(default=0, validator=non_negative())


class Toy2DSource(Source):
    """``toy2d`` points, stored as they are (no autoencoder) in the ``points`` bucket."""

    name = "toy2d"
    kind = "points"

    def __init__(self, config: Toy2DSourceConfig) -> None:
        if config.count < 1:
            raise GenflowError("toy2d count must be >= 1")
        self.config = config
        toy = Toy2D(Toy2DConfig(kind=config.kind, radius=config.radius, std=config.std))
        self._points = toy.draw(config.count, torch.Generator().manual_seed(config.seed)).numpy()

    def buckets(self) -> list[SourceBucket]:
        return [SourceBucket(key=POINTS_BUCKET, count=self.config.count, pixel_size=None)]

    def load(self, key: str, start: int, stop: int) -> SourceChunk:
        return SourceChunk(data=self._points[start:stop].astype(np.float32), index=np.arange(start, stop))
