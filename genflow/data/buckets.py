"""Native-resolution buckets: image sizes that keep an aspect ratio on a grid of ``multiple`` pixels.

A bucket holds images of one pixel size ``(H, W)``; its store subgroup is ``buckets/<H>x<W>``
(non-image stores have the single bucket ``points``). Sizes keep the pixel area near
``resolution**2`` so every bucket costs about the same per sample.
"""

from __future__ import annotations

import math

from genflow.errors import GenflowError

POINTS_BUCKET = "points"


def bucket_size(resolution: int, ratio: float, multiple: int) -> tuple[int, int]:
    """``(H, W)`` with ``W / H`` close to ``ratio``, ``H * W`` close to ``resolution**2`` and both
    sides positive multiples of ``multiple``."""
    height = resolution / math.sqrt(ratio)
    width = resolution * math.sqrt(ratio)
    return _round(height, multiple), _round(width, multiple)


def _round(side: float, multiple: int) -> int:
    return max(multiple, int(round(side / multiple)) * multiple)


def bucket_key(height: int, width: int) -> str:
    """The subgroup name of a ``(H, W)`` bucket: ``"<H>x<W>"``."""
    return f"{height}x{width}"


def parse_bucket_key(key: str) -> tuple[int, int] | None:
    """``"32x48"`` -> ``(32, 48)``; ``None`` for the ``points`` bucket."""
    if key == POINTS_BUCKET:
        return None
    try:
        height, width = (int(part) for part in key.split("x"))
    except ValueError:
        raise GenflowError(f"bucket '{key}' has an invalid name; allowed: '<H>x<W>' or '{POINTS_BUCKET}'") from None
    return height, width
