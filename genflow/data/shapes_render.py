"""Vectorised rendering of ``shapes`` scenes with numpy.

Each shape is a signed distance function ``sdf(u, v)`` in object units (the object's half-size is
1, ``v`` grows downwards); coverage ``clip(0.5 - d_pixels, 0, 1)`` anti-aliases edges over one
pixel. A batch of same-size scenes is drawn object slot by slot and shape by shape, each step one
array operation over every image that has that shape in that slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from genflow.data.scene import Background, Scene

#: Colour vocabulary: name -> RGB (0-255). Backgrounds are greys in 0-140, so colours stay apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 47),
    "green": (60, 180, 75),
    "blue": (40, 90, 230),
    "yellow": (240, 205, 40),
    "purple": (150, 60, 205),
    "orange": (245, 130, 35),
    "cyan": (50, 205, 215),
    "white": (240, 240, 240),
}

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]

_STAR_INNER, _STAR_OUTER = 0.45, 1.1


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sqrt(u * u + v * v) - 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) - 0.85


def _diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) + np.abs(v) - 1.1) / math.sqrt(2.0)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral, apex up, circumradius 1.15, bounding box centred: the centroid sits 0.2875
    # below the centre; edge normals (0, 1) and (+-sin 60, -cos 60), inradius 0.575.
    vc = v - 0.2875
    return np.maximum(vc, 0.8660254 * np.abs(u) - 0.5 * vc) - 0.575


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Five points, one up. Fold the angle into [0, 36 deg] (outer vertex at 0, inner at 36) and
    # take the distance to the edge from the outer vertex A to the inner vertex B.
    sector = 2 * math.pi / 5
    theta = np.mod(np.arctan2(u, -v), sector)
    phi = np.minimum(theta, sector - theta)
    rho = np.sqrt(u * u + v * v)
    ax, bx, by = _STAR_OUTER, _STAR_INNER * math.cos(sector / 2), _STAR_INNER * math.sin(sector / 2)
    nx, ny = by, ax - bx  # outward normal of A -> B
    norm = math.hypot(nx, ny)
    return (nx * (rho * np.cos(phi) - ax) + ny * rho * np.sin(phi)) / norm


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au - 1.0, av - 0.33), np.maximum(au - 0.33, av - 1.0))


#: Shape vocabulary: name -> signed distance function.
SHAPES: dict[str, Sdf] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "diamond": _diamond,
    "cross": _cross,
}


def render_scenes(scenes: Sequence[Scene]) -> np.ndarray:
    """Draw scenes of one size as ``uint8`` ``(N, H, W, 3)``."""
    height, width = scenes[0].height, scenes[0].width
    if any((s.height, s.width) != (height, width) for s in scenes):
        raise ValueError("render_scenes needs scenes of one size; group them by (height, width)")
    ys = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]  # (1, H, 1)
    xs = (np.arange(width, dtype=np.float32) + 0.5)[None, None, :]  # (1, 1, W)
    image = _backgrounds([s.background for s in scenes], ys, xs)  # (N, H, W, 3)
    side = min(height, width)
    slots = max(len(s.objects) for s in scenes)
    for k in range(slots):
        for shape, sdf in SHAPES.items():
            rows = [i for i, s in enumerate(scenes) if len(s.objects) > k and s.objects[k].shape == shape]
            if rows:
                objects = [scenes[i].objects[k] for i in rows]
                _draw(image, np.asarray(rows), objects, sdf, ys, xs, height, width, side)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _draw(
    image: np.ndarray,
    rows: np.ndarray,
    objects: Sequence,
    sdf: Sdf,
    ys: np.ndarray,
    xs: np.ndarray,
    height: int,
    width: int,
    side: int,
) -> None:
    """Composite one shape over ``image[rows]`` in place."""
    cx = np.array([o.x * width for o in objects], dtype=np.float32)[:, None, None]
    cy = np.array([o.y * height for o in objects], dtype=np.float32)[:, None, None]
    radius = np.array([0.5 * o.size * side for o in objects], dtype=np.float32)[:, None, None]
    distance = sdf((xs - cx) / radius, (ys - cy) / radius) * radius  # (n, H, W) in pixels
    alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
    colour = np.array([COLOURS[o.colour] for o in objects], dtype=np.float32)[:, None, None, :]
    image[rows] = image[rows] * (1.0 - alpha) + colour * alpha


def _backgrounds(backgrounds: Sequence[Background], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Grey backgrounds ``(N, H, W, 3)`` float32: plain, sinusoidal stripes or checks."""
    n, height, width = len(backgrounds), ys.shape[1], xs.shape[2]
    plane = np.empty((n, height, width), dtype=np.float32)
    plane[:] = np.array([b.grey for b in backgrounds], dtype=np.float32)[:, None, None]
    textured = [i for i, b in enumerate(backgrounds) if b.kind != "plain"]
    if textured:  # patterns only where needed: most scenes are plain by default
        plane[textured] = _patterns([backgrounds[i] for i in textured], ys, xs)
    return np.repeat(plane[..., None], 3, axis=-1)


def _patterns(backgrounds: Sequence[Background], ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Stripes (a sinusoid at ``angle``) or checks between ``grey`` and ``grey2``: ``(n, H, W)``."""
    grey = np.array([b.grey for b in backgrounds], dtype=np.float32)[:, None, None]
    grey2 = np.array([b.grey2 for b in backgrounds], dtype=np.float32)[:, None, None]
    period = np.array([max(b.period, 1.0) for b in backgrounds], dtype=np.float32)[:, None, None]
    angle = np.array([b.angle for b in backgrounds], dtype=np.float32)[:, None, None]
    stripes = np.array([b.kind == "stripes" for b in backgrounds])[:, None, None]
    along = xs * np.cos(angle) + ys * np.sin(angle)
    mix = np.where(
        stripes, 0.5 + 0.5 * np.sin(2 * np.pi * along / period), (np.floor(xs / period) + np.floor(ys / period)) % 2
    )
    return grey + (grey2 - grey) * mix
