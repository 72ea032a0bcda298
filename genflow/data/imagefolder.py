"""``imagefolder``: images from a directory, bucketed by native aspect ratio.

Layout: ``root/<class>/<image>`` gives class labels (sorted folder names); images directly in
``root`` (or nested without a class level) are unlabelled. A caption is read from a ``.txt`` file
next to an image with the same stem; when any image has one, every image must.

Each image keeps its aspect ratio (clipped to ``max_aspect``): it is resized to cover the bucket
size from :func:`genflow.data.buckets.bucket_size` (area near ``resolution**2``, sides multiples
of ``multiple``) with Pillow's bicubic filter (``Image.Resampling.BICUBIC``, antialiased when
shrinking) and centre-cropped. Rows of a bucket are in an order shuffled by ``seed`` so that
chunk-level shuffling when reading mixes classes.

``channels``: 1 keeps images grey (one channel), 3 makes them RGB; 0 (the default) chooses 1 when
every image of the folder is greyscale (Pillow modes ``1``, ``L``, ``LA``, ``I``, ``F``, ...) and 3
otherwise. ``holdout``: the fraction of each class (of the whole folder when unlabelled) set aside,
chosen by ``seed``; ``split`` says which part this source holds (``train``: the rest, ``holdout``:
the set-aside images). ``genflow prepare --holdout F`` writes both (:mod:`genflow.data.splits`).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
from PIL import Image, ImageOps

from genflow.config.domains import Domain, interval, non_negative, positive, text, unit
from genflow.data.buckets import bucket_key, bucket_size
from genflow.data.sources import Source, SourceBucket, SourceChunk
from genflow.errors import GenflowError, allowed

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@attrs.frozen(kw_only=True)
class ImageFolderConfig:
    """``root``: the folder; ``resolution``: side of the square bucket (pixel area of all);
    ``multiple``: side granularity in pixels (autoencoder downsampling x backbone patch size);
    ``max_aspect``: aspect ratios beyond it are cropped to it (1.0 = square crops); ``channels``:
    1 (grey), 3 (RGB) or 0 (1 when every image is grey); ``holdout`` and ``split``: see the module."""

    root: str = attrs.field(default="", validator=text(empty=True))
    resolution: int = attrs.field(default=256, validator=positive())
    multiple: int = attrs.field(default=16, validator=positive())
    max_aspect: float = attrs.field(default=2.0, validator=interval(1.0))
    seed: int = attrs.field(default=0, validator=non_negative())
    channels: int = attrs.field(default=0, validator=Domain("0 (grey when every image is grey), 1 or 3",
                                                            lambda v: v in (0, 1, 3)))
    holdout: float = attrs.field(default=0.0, validator=unit(high_open=True))
    split: Literal["train", "holdout"] = "train"


#: Pillow modes whose images have one (grey) channel of content.
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


@attrs.frozen(kw_only=True)
class ImageEntry:
    path: Path
    index: int
    label: int
    caption: str | None
    size: tuple[int, int]  # bucket (H, W)
    channels: int = 3


class ImageFolderSource(Source):
    """An image folder scanned once (headers only) and loaded chunk by chunk."""

    name = "imagefolder"

    def __init__(self, config: ImageFolderConfig) -> None:
        _validate(config)
        self.config = config
        self.root = Path(config.root).expanduser()
        files = _scan(self.root)
        self.classes = _class_names(self.root, files)
        self.num_classes = len(self.classes)
        captions = _captions(files)
        self.has_captions = captions is not None
        self._files = files
        headers = [_image_header(path) for path in files]
        grey = all(mode in GREY_MODES for _, mode in headers)
        self.channels = config.channels or (1 if grey else 3)
        labels = [self.classes.index(p.relative_to(self.root).parts[0]) if self.classes else -1 for p in files]
        kept = held_out_rows(labels, config.holdout, config.seed)
        if config.split == "train":
            kept = np.setdiff1d(np.arange(len(files)), kept)
        if len(kept) == 0:
            raise GenflowError(f"imagefolder split '{config.split}' of '{self.root}' is empty ({len(files)} images, "
                               f"holdout = {config.holdout}); allowed: a holdout fraction that leaves images in both")
        self._buckets = self._assign(files, [size for size, _ in headers], labels, captions, kept)

    def _assign(self, files: list[Path], sizes: list[tuple[int, int]], labels: list[int],
                captions: list[str] | None, kept: np.ndarray) -> dict[str, list[ImageEntry]]:
        c = self.config
        table: dict[str, list[ImageEntry]] = {}
        for i in kept.tolist():
            width, height = sizes[i]
            ratio = min(max(width / height, 1.0 / c.max_aspect), c.max_aspect)
            size = bucket_size(c.resolution, ratio, c.multiple)
            entry = ImageEntry(path=files[i], index=i, label=labels[i], caption=captions[i] if captions else None,
                               size=size, channels=self.channels)
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


def _validate(config: ImageFolderConfig) -> None:
    if config.max_aspect < 1.0 or config.multiple < 1 or config.resolution < config.multiple:
        raise GenflowError("imagefolder needs max_aspect >= 1, multiple >= 1 and resolution >= multiple")
    if config.channels not in (0, 1, 3):
        raise GenflowError(f"imagefolder channels = {config.channels}; allowed: 0 (1 when every image is grey), "
                           "1 (grey), 3 (RGB)")
    if not 0.0 <= config.holdout < 1.0:
        raise GenflowError(f"imagefolder holdout = {config.holdout}; allowed: a fraction in [0, 1)")
    if config.split not in ("train", "holdout"):
        raise GenflowError(f"imagefolder split = '{config.split}'; allowed: {allowed(['train', 'holdout'])}")


def held_out_rows(labels: list[int], fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the held-out images: ``round(fraction * n)`` of each class's ``n`` images
    (at least one when ``fraction > 0`` and the class has two or more), drawn with ``seed``."""
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 1])
    table = np.asarray(labels, dtype=np.int64)
    chosen = []
    for label in np.unique(table):
        members = np.flatnonzero(table == label)
        k = round(fraction * len(members))
        k = max(k, 1) if len(members) >= 2 else k
        chosen.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


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


def _image_header(path: Path) -> tuple[tuple[int, int], str]:
    """``((width, height), mode)`` from the header; an unreadable file is a ``GenflowError``."""
    try:
        with Image.open(path) as image:
            return image.size, image.mode
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(path, exc) from None


def _load_image(entry: ImageEntry) -> np.ndarray:
    """The image as ``uint8`` ``(H, W, C)`` at its bucket size (cover, then centre crop), ``C`` =
    ``entry.channels`` (Pillow's ``L`` conversion for grey: ITU-R 601-2 luma)."""
    height, width = entry.size
    try:
        with Image.open(entry.path) as opened:
            image = _convert(ImageOps.exif_transpose(opened), entry.channels)
            fitted = ImageOps.fit(image, (width, height), method=Image.Resampling.BICUBIC)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(entry.path, exc) from None
    pixels = np.asarray(fitted, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _convert(image: Image.Image, channels: int) -> Image.Image:
    """``image`` in mode ``L`` (1 channel) or ``RGB`` (3). Integer greys above 8 bits are scaled
    from [0, 65535], float greys from [0, 1] (or [0, 255] when they exceed 1), before conversion."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = float(values.max()) if values.size else 0.0
        top = (1.0 if peak <= 1.0 else 255.0) if image.mode == "F" else (255.0 if peak <= 255 else 65535.0)
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8), mode="L")
    return image.convert("L" if channels == 1 else "RGB")


def _unreadable(path: Path, exc: Exception) -> GenflowError:
    return GenflowError(
        f"cannot read image '{path}' ({type(exc).__name__}: {exc}); allowed: image files Pillow can decode "
        f"({', '.join(EXTENSIONS)})"
    )
