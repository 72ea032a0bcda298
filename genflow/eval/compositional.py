"""Compositional prompt following on ``shapes`` captions, in the spirit of GenEval.

A fixed prompt set (:func:`prompt_set`: the captions of scenes drawn by the run's own generator
with another seed, so the scenes are not training images; the caption language is small, so most
prompts also occur as training captions: 98% of 1000 against a 20000-image multi-object store) is
sampled once per step count; an analytic detector (:func:`detect`) finds the
objects of each sample and the prompt's parse (:func:`parse_caption`) says what should be there:

- ``colour``: the set of detected colours is the set of colours asked for;
- ``shape``: the set of detected shapes is the set of shapes asked for;
- ``count``: as many objects as asked for;
- ``position`` (two-group prompts only): the groups' centroids satisfy "left of" / "right of" /
  "above" / "below";
- ``overall``: every group has exactly its count of objects of its colour and shape, nothing
  else is there, and the position holds (GenEval's per-prompt success).

The detector labels each pixel with the nearest vocabulary colour (within ``COLOUR_DISTANCE`` in
RGB), splits each colour into 4-connected components, drops specks, and names each component's
shape by the best intersection-over-union with the shape's signed distance function fitted to the
component's bounding box (the generator's own shapes, :mod:`genflow.data.shapes_render`). On real
images it scores about 100% (see tests/unit/eval/test_compositional.py).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import attrs
import numpy as np
from torch import Tensor

from genflow.data.shapes import RELATIONS, ShapesConfig, scene_attributes
from genflow.data.shapes_render import COLOURS, SHAPES
from genflow.errors import GenflowError

#: A pixel within this RGB distance of a vocabulary colour (and nearest to it) belongs to it.
COLOUR_DISTANCE = 80.0
#: Components smaller than this fraction of the image are specks, not objects.
MIN_AREA_FRACTION = 0.004
#: The prompt set's scenes come from the dataset's generator with this seed offset (held out).
PROMPT_SEED_OFFSET = 1_000_003
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}
_PLURALS = {"crosses": "cross"}


@attrs.frozen(kw_only=True)
class Group:
    """``count`` objects of one ``colour`` and ``shape``."""

    count: int
    colour: str
    shape: str


@attrs.frozen(kw_only=True)
class Prompt:
    """A parsed caption: one or two groups, ``relation`` relating the first to the second."""

    text: str
    groups: tuple[Group, ...]
    relation: str | None = None


@attrs.frozen(kw_only=True)
class Detection:
    """One detected object: ``x``, ``y`` centroid as fractions of width / height."""

    colour: str
    shape: str
    x: float
    y: float
    area: int


def parse_caption(text: str) -> Prompt | None:
    """``"two red circles left of a blue square"`` -> a :class:`Prompt`; None if it is not a
    ``shapes`` caption."""
    phrase = r"(a|an|one|two|three) (\w+) (\w+)"
    relations = "|".join(RELATIONS)
    match = re.fullmatch(rf"{phrase}(?: ({relations}) {phrase})?", text.strip().lower())
    if match is None:
        return None
    parts = match.groups()
    groups = [_group(*parts[:3])]
    if parts[3] is not None:
        groups.append(_group(*parts[4:7]))
    if any(g is None for g in groups):
        return None
    return Prompt(text=text, groups=tuple(g for g in groups if g is not None), relation=parts[3])


def _group(number: str, colour: str, noun: str) -> Group | None:
    shape = _PLURALS.get(noun, noun[:-1] if noun.endswith("s") and noun[:-1] in SHAPES else noun)
    if colour not in COLOURS or shape not in SHAPES:
        return None
    return Group(count=_NUMBERS[number], colour=colour, shape=shape)


def prompt_set(config: ShapesConfig, n: int) -> list[str]:
    """``n`` captions of scenes the training store does not hold (the generator with another seed)."""
    held_out = attrs.evolve(config, seed=config.seed + PROMPT_SEED_OFFSET)
    return [scene_attributes(held_out, i).caption for i in range(n)]


# ------------------------------------------------------------------------------------------------
# the detector
# ------------------------------------------------------------------------------------------------


@functools.cache
def _unit_box(shape: str) -> tuple[float, float, float, float]:
    """``(u0, u1, v0, v1)``: the extent of ``shape``'s sdf <= 0 region in object units."""
    grid = np.linspace(-1.6, 1.6, 641)
    u, v = np.meshgrid(grid, grid)
    inside = SHAPES[shape](u, v) <= 0
    us, vs = u[inside], v[inside]
    return float(us.min()), float(us.max()), float(vs.min()), float(vs.max())


def _components(labels: np.ndarray) -> np.ndarray:
    """4-connected components of equal non-negative ``labels`` ``(N, H, W)``: ids ``(N, H, W)``
    (unique within an image), -1 elsewhere."""
    N, H, W = labels.shape
    big = H * W
    ids = np.where(labels >= 0, np.arange(H * W).reshape(1, H, W), big)
    valid = labels >= 0
    while True:  # min-label propagation between equal-colour neighbours until nothing changes
        new = ids.copy()
        for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
            nb_ids, nb_lab = np.roll(ids, step, axis), np.roll(labels, step, axis)
            same = (nb_lab == labels) & valid
            # np.roll wraps around: the first (last) row / column has no neighbour on that side.
            edge: list[slice | int] = [slice(None)] * 3
            edge[axis] = 0 if step == 1 else -1
            same[tuple(edge)] = False
            np.minimum(new, np.where(same, nb_ids, big), out=new)
        if np.array_equal(new, ids):
            return np.where(valid, ids, -1)
        ids = new


def _coverage(image: np.ndarray, colour: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per-pixel fraction of ``colour`` over ``background`` ``(H, W)``: the projection of each
    pixel onto the segment background -> colour (anti-aliased edges give fractions)."""
    axis = colour - background  # (3,)
    return np.clip((image.astype(np.float32) - background) @ axis / float(axis @ axis), 0.0, 1.0)


#: Jitter of the fitted templates: size factors and centre shifts (pixels).
_SCALES = np.array([0.85, 1.0, 1.15])[:, None, None, None, None]
_SHIFTS = np.array([-0.3, 0.0, 0.3])


def _shape_of(mask: np.ndarray, soft: np.ndarray, shapes: Sequence[str]) -> str:
    """The shape whose sdf, fitted to ``mask``'s bounding box (and jittered by a fraction of a pixel
    in size and position), overlaps the soft coverage ``soft`` best (soft IoU)."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1  # pixel-edge bounding box
    # Only a window around the object matters (soft is zero elsewhere; templates stay inside it).
    wy0, wx0 = max(y0 - 2, 0), max(x0 - 2, 0)
    soft = soft[wy0:y1 + 2, wx0:x1 + 2]
    py = (np.arange(wy0, wy0 + soft.shape[0]) + 0.5)[None, None, None, :, None]
    px = (np.arange(wx0, wx0 + soft.shape[1]) + 0.5)[None, None, None, None, :]
    dx, dy = _SHIFTS[None, :, None, None, None], _SHIFTS[None, None, :, None, None]
    best, best_iou = shapes[0], -1.0
    for shape in shapes:
        u0, u1, v0, v1 = _unit_box(shape)
        radius = 0.5 * ((x1 - x0) / (u1 - u0) + (y1 - y0) / (v1 - v0)) * _SCALES  # (3, 1, 1, 1, 1)
        cx = 0.5 * (x0 + x1) - 0.5 * (u0 + u1) * radius + dx
        cy = 0.5 * (y0 + y1) - 0.5 * (v0 + v1) * radius + dy
        alpha = np.clip(0.5 - SHAPES[shape]((px - cx) / radius, (py - cy) / radius) * radius, 0, 1)  # (3, 3, 3, h, w)
        iou = np.minimum(alpha, soft).sum((-1, -2)) / np.maximum(np.maximum(alpha, soft).sum((-1, -2)), 1e-9)
        if float(iou.max()) > best_iou:
            best, best_iou = shape, float(iou.max())
    return best


def detect(image: np.ndarray, colours: Sequence[str], shapes: Sequence[str],
           ids: np.ndarray | None = None) -> list[Detection]:
    """Objects in one ``(H, W, 3)`` uint8 image, given the vocabulary (see the module docstring);
    ``ids``: its components when :func:`detect_batch` computed them for many images at once."""
    H, W, _ = image.shape
    palette = np.array([COLOURS[c] for c in colours], dtype=np.float32)  # (K, 3)
    labels = _colour_labels(image[None], palette)[0]  # (H, W)
    if ids is None:
        ids = _components(labels[None])[0]
    free = labels < 0
    background = np.median(image[free], axis=0).astype(np.float32) if free.any() else np.full(3, 80.0, np.float32)
    found = []
    for component in np.unique(ids[ids >= 0]):
        mask = ids == component
        area = int(mask.sum())
        if area < MIN_AREA_FRACTION * H * W:
            continue
        ys, xs = np.nonzero(mask)
        k = int(labels[ys[0], xs[0]])
        # Soft coverage of this object's colour around it: its own pixels and the unlabelled ones
        # (anti-aliased edges), never another object's.
        near = np.zeros_like(mask)
        near[max(ys.min() - 1, 0):ys.max() + 2, max(xs.min() - 1, 0):xs.max() + 2] = True
        soft = np.where(mask | (near & free), _coverage(image, palette[k], background), 0.0)
        found.append(Detection(colour=colours[k], shape=_shape_of(mask, soft, shapes), x=float((xs.mean() + 0.5) / W),
                               y=float((ys.mean() + 0.5) / H), area=area))
    return found


def _colour_labels(images: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour within ``COLOUR_DISTANCE`` per pixel, else -1: ``(N, H, W)``."""
    distance = np.linalg.norm(images[..., None, :].astype(np.float32) - palette, axis=-1)  # (N, H, W, K)
    return np.where(distance.min(-1) < COLOUR_DISTANCE, distance.argmin(-1), -1)


def detect_batch(images: np.ndarray, colours: Sequence[str], shapes: Sequence[str]) -> list[list[Detection]]:
    """:func:`detect` over ``(N, H, W, 3)`` uint8 images (components found for all at once)."""
    palette = np.array([COLOURS[c] for c in colours], dtype=np.float32)
    ids = _components(_colour_labels(images, palette))
    return [detect(image, colours, shapes, ids=i) for image, i in zip(images, ids, strict=True)]


def to_uint8(images: Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(N, H, W, 3)`` uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu()
    return x.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------


def _position_ok(prompt: Prompt, found: list[Detection]) -> bool:
    first, second = prompt.groups
    centres = []
    for group in (first, second):
        members = [d for d in found if d.colour == group.colour and d.shape == group.shape] or \
            [d for d in found if d.colour == group.colour]
        if not members:
            return False
        centres.append((np.mean([d.x for d in members]), np.mean([d.y for d in members])))
    (ax, ay), (bx, by) = centres
    return {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[prompt.relation or ""]


def score(prompt: Prompt, found: list[Detection]) -> dict[str, float]:
    """Per-attribute success (1.0 / 0.0) of one sample; ``position`` is NaN for one-group prompts."""
    colours_ok = {d.colour for d in found} == {g.colour for g in prompt.groups}
    shapes_ok = {d.shape for d in found} == {g.shape for g in prompt.groups}
    count_ok = len(found) == sum(g.count for g in prompt.groups)
    position = _position_ok(prompt, found) if prompt.relation else None
    exact = count_ok and all(sum(d.colour == g.colour and d.shape == g.shape for d in found) == g.count
                             for g in prompt.groups)
    overall = exact and (position is None or position)
    return {"colour": float(colours_ok), "shape": float(shapes_ok), "count": float(count_ok),
            "position": float("nan") if position is None else float(position), "overall": float(overall)}


def score_images(images: Tensor, captions: Sequence[str], colours: Sequence[str],
                 shapes: Sequence[str]) -> list[dict[str, float] | None]:
    """:func:`score` of every image against its caption (None where a caption does not parse)."""
    if len(captions) != images.shape[0]:
        raise GenflowError(f"{images.shape[0]} samples but {len(captions)} captions")
    found = detect_batch(to_uint8(images), colours, shapes)
    out: list[dict[str, float] | None] = []
    for detections, caption in zip(found, captions, strict=True):
        prompt = parse_caption(caption)
        out.append(None if prompt is None else score(prompt, detections))
    return out
