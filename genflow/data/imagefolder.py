"""``imagefolder``: images from a directory, bucketed by native aspect ratio.

Layout: ``root/<class>/<image>`` gives class labels (sorted folder names); images directly in
``root`` (or nested without a class level) are unlabelled. A caption is read from a ``.txt`` file
next to an image with the same stem; when any image has one, every image must.

Each image keeps its aspect ratio (clipped to ``max_aspect``): it is resized to cover the bucket
size from :func:`genflow.data.buckets.bucket_size` (area near ``resolution**2``, sides multiples
of ``multiple``) and centre-cropped. Rows of a bucket are in an order shuffled by ``seed`` so that
chunk-level shuffling when reading mixes classes.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import numpy as np
from PIL import Image, ImageOps

from genflow.config.domains import interval, non_negative, positive, text
from genflow.data.buckets import bucket_key, bucket_size
from genflow.data.sources import Source, SourceBucket, SourceChunk
from genflow.errors import GenflowError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@attrs.frozen(kw_only=True)
class ImageFolderConfig:
    """``root``: the folder; ``resolution``: side of the square bucket (pixel area of all);
    ``multiple``: side granularity in pixels (autoencoder downsampling x backbone patch size);
    ``max_aspect``: aspect ratios beyond it are cropped to it (1.0 = square crops)."""

    root: str = attrs.field(default="", validator=text(empty=True))
    resolution: int = attrs.field(default=256, validator=positive())
    multiple: int = attrs.field(default=16, validator=positive())
    max_aspect: float = attrs.field(default=2.0, validator=interval(1.0))
    seed: int = attrs.field(default=0, validator=non_negative())


@attrs.frozen(kw_only=True)
class ImageEntry:
    path: Path
    index: int
    label: int
    caption: str | None
    size: tuple[int, int]  # bucket (H, W)


class ImageFolderSource(Source):
    """An image folder scanned once (headers only) and loaded chunk by chunk."""

    name = "imagefolder"

    def __init__(self, config: ImageFolderConfig) -> None:
        if config.max_aspect < 1.0 or config.multiple < 1 or config.resolution < config.multiple:
            raise GenflowError("imagefolder needs max_aspect >= 1, multiple >= 1 and resolution >= multiple")
        self.config = config
        self.root = Path(config.root).expanduser()
        files = _scan(self.root)
        self.classes = _class_names(self.root, files)
        self.num_classes = len(self.classes)
        captions = _captions(files)
        self.has_captions = captions is not None
        self._files = files
        self._buckets = self._assign(files, captions)

    def _assign(self, files: list[Path], captions: list[str] | None) -> dict[str, list[ImageEntry]]:
        c = self.config
        table: dict[str, list[ImageEntry]] = {}
        for i, path in enumerate(files):
            width, height = _image_size(path)
            ratio = min(max(width / height, 1.0 / c.max_aspect), c.max_aspect)
            size = bucket_size(c.resolution, ratio, c.multiple)
            label = self.classes.index(path.relative_to(self.root).parts[0]) if self.classes else -1
            entry = ImageEntry(path=path, index=i, label=label, caption=captions[i] if captions else None, size=size)
            table.setdefault(bucket_key(*size), []).append(entry)
        rng = np.random.default_rng(c.seed)
        return {key: [rows[j] for j in rng.permutation(len(rows))] for key, rows in sorted(table.items())}

    def buckets(self) -> list[SourceBucket]:
        return [SourceBucket(key=k, count=len(rows), pixel_size=rows[0].size) for k, rows in self._buckets.items()]

    def load(self, key: str, start: int, stop: int) -> SourceChunk:
        entries = self._buckets[key][start:stop]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            images = list(pool.map(_load_image, entries))
        index = np.array([e.index for e in entries], dtype=np.int64)
        labels = np.array([e.label for e in entries], dtype=np.int64) if self.classes else None
        captions = [e.caption or "" for e in entries] if self.has_captions else None
        return SourceChunk(data=np.stack(images), index=index, labels=labels, captions=captions)

    def fingerprint(self) -> str:
        # Any added, removed or changed file changes what the store holds.
        digest = hashlib.sha256(super().fingerprint().encode())
        for path in self._files:
            stat = path.stat()
            digest.update(f"{path.relative_to(self.root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()[:32]


def _scan(root: Path) -> list[Path]:
    if not root.is_dir():
        raise GenflowError(f"image folder '{root}' does not exist or is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise GenflowError(f"image folder '{root}' has no images; allowed extensions: {', '.join(EXTENSIONS)}")
    return files


def _class_names(root: Path, files: list[Path]) -> list[str]:
    """Sorted top-level folder names when every image sits in one; otherwise no classes."""
    if any(len(p.relative_to(root).parts) < 2 for p in files):
        return []
    return sorted({p.relative_to(root).parts[0] for p in files})


def _captions(files: list[Path]) -> list[str] | None:
    sidecars = [p.with_suffix(".txt") for p in files]
    present = [s.is_file() for s in sidecars]
    if not any(present):
        return None
    if not all(present):
        missing = sidecars[present.index(False)]
        raise GenflowError(
            f"caption file '{missing}' is missing; when any image has a .txt caption, every image needs one"
        )
    return [s.read_text(encoding="utf-8").strip() for s in sidecars]


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the header; an unreadable file is a ``GenflowError``."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from None


def _load_image(entry: ImageEntry) -> np.ndarray:
    """The image as ``uint8`` ``(H, W, 3)`` at its bucket size (cover, then centre crop)."""
    height, width = entry.size
    try:
        with Image.open(entry.path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
            fitted = ImageOps.fit(image, (width, height), method=Image.Resampling.BICUBIC)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(entry.path, exc) from None
    return np.asarray(fitted, dtype=np.uint8)


def _unreadable(path: Path, exc: Exception) -> GenflowError:
    return GenflowError(
        f"cannot read image '{path}' ({type(exc).__name__}: {exc}); allowed: image files Pillow can decode "
        f"({', '.join(EXTENSIONS)})"
    )
