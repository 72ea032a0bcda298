"""``shapes``: a deterministic procedural dataset of coloured shapes with exact attributes.

Every image is a function of ``(config, index)``: :func:`scene_attributes` draws its scene
(shapes, colours, positions, sizes, background, caption, class label) from a generator seeded by
``(seed, index)``, and :func:`render_scenes` draws scenes with vectorised numpy masks
(:mod:`genflow.data.shapes_render`). Nothing is downloaded, so labels and captions are exact and
evaluation can check colour, shape, count and position of generated samples.

Modes: ``single`` (default) has one object per image and a class label
``shape_index * len(colours) + colour_index`` (:func:`class_names` lists them); ``multi`` has one
to three objects in one or two groups related by "left of", "right of", "above" or "below", and
captions only ("two red circles left of a blue square"). Both modes carry captions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import attrs
import numpy as np

from genflow.config.domains import each, interval, non_negative, one_of, positive
from genflow.data.buckets import bucket_size
from genflow.data.scene import Background, Scene, ShapeObject
from genflow.data.shapes_render import COLOURS, SHAPES, render_scenes
from genflow.errors import GenflowError, allowed

__all__ = [
    "COLOURS",
    "SHAPES",
    "Background",
    "Scene",
    "ShapeObject",
    "ShapesConfig",
    "class_names",
    "image_size",
    "render_scenes",
    "scene_attributes",
    "validate",
]

RELATIONS = ("left of", "right of", "above", "below")
_NUMBERS = {1: "a", 2: "two", 3: "three"}
_PLURALS = {"cross": "crosses"}


@attrs.frozen(kw_only=True)
class ShapesConfig:
    """What the generator draws.

    ``resolution``: side of a square image (the pixel area is ``resolution**2`` at other aspect
    ratios); ``aspect_ratios``: width / height ratios, one chosen per image, sides rounded to a
    multiple of ``multiple`` pixels; ``shapes`` / ``colours``: the vocabulary (see ``SHAPES`` and
    ``COLOURS``); ``background``: plain grey, textured (stripes or checks) or either.
    """

    resolution: int = attrs.field(default=32, validator=interval(8, integer=True))
    count: int = attrs.field(default=20000, validator=positive())
    seed: int = attrs.field(default=0, validator=non_negative())
    mode: Literal["single", "multi"] = "single"
    shapes: tuple[str, ...] = attrs.field(default=("circle", "square", "triangle", "star"),
                                          validator=each(one_of(list(SHAPES)), distinct=True))
    colours: tuple[str, ...] = attrs.field(default=("red", "green", "blue", "yellow"),
                                           validator=each(one_of(list(COLOURS)), distinct=True))
    background: Literal["plain", "textured", "mixed"] = "plain"
    aspect_ratios: tuple[float, ...] = attrs.field(default=(1.0,), validator=each(interval(0.25, 4.0)))
    multiple: int = attrs.field(default=8, validator=positive())


def validate(config: ShapesConfig) -> None:
    """Raise ``GenflowError`` naming the bad field and the allowed values."""
    for field, values, known in (("shapes", config.shapes, SHAPES), ("colours", config.colours, COLOURS)):
        bad = [v for v in values if v not in known]
        if bad or not values or len(set(values)) != len(values):
            raise GenflowError(f"shapes.{field} = {list(values)} is invalid; allowed: {allowed(known)} (distinct)")
    if config.resolution < 8 or config.count < 1 or config.multiple < 1:
        raise GenflowError("shapes needs resolution >= 8, count >= 1 and multiple >= 1")
    if not config.aspect_ratios or any(not 0.25 <= r <= 4.0 for r in config.aspect_ratios):
        raise GenflowError(f"shapes.aspect_ratios = {list(config.aspect_ratios)}; allowed: 0.25 to 4.0")
    if config.mode == "multi" and len(config.shapes) * len(config.colours) < 2:
        raise GenflowError("shapes mode 'multi' needs at least two shape/colour combinations")


def class_names(config: ShapesConfig) -> list[str]:
    """Class ``shape_index * len(colours) + colour_index`` is named ``"<colour> <shape>"``;
    empty in multi mode (no class labels)."""
    if config.mode != "single":
        return []
    return [f"{colour} {shape}" for shape in config.shapes for colour in config.colours]


def image_size(config: ShapesConfig, ratio: float) -> tuple[int, int]:
    """``(height, width)`` of an image with aspect ratio ``ratio`` (width / height)."""
    if ratio == 1.0:
        return config.resolution, config.resolution
    return bucket_size(config.resolution, ratio, config.multiple)


def scene_attributes(config: ShapesConfig, index: int) -> Scene:
    """The scene of image ``index``: a pure function of ``(config, index)``."""
    rng = np.random.default_rng([config.seed, index])
    ratio = config.aspect_ratios[int(rng.integers(len(config.aspect_ratios)))]
    height, width = image_size(config, ratio)
    background = _background(config, rng, min(height, width))
    groups: tuple[tuple[int, int, int], ...]
    if config.mode == "single":
        groups = ((int(rng.integers(len(config.shapes))), int(rng.integers(len(config.colours))), 1),)
        relation = None
        objects = _place(rng, height, width, [(groups[0], None)], size_range=(0.4, 0.75))
        label = groups[0][0] * len(config.colours) + groups[0][1]
    else:
        groups, relation = _multi_groups(config, rng)
        regions = _regions(relation, len(groups))
        objects = _place(rng, height, width, list(zip(groups, regions, strict=True)), size_range=(0.2, 0.32))
        label = -1
    shape_objects = tuple(
        ShapeObject(shape=config.shapes[s], colour=config.colours[c], x=x, y=y, size=size)
        for (s, c), x, y, size in objects
    )
    named = [(config.shapes[s], config.colours[c], n) for s, c, n in groups]
    return Scene(
        index=index,
        height=height,
        width=width,
        objects=shape_objects,
        background=background,
        groups=tuple(n for _, _, n in groups),
        relation=relation,
        caption=caption(named, relation),
        label=label,
    )


def caption(groups: Sequence[tuple[str, str, int]], relation: str | None) -> str:
    """``[("circle", "red", 2), ("square", "blue", 1)], "left of"`` -> "two red circles left of a
    blue square"."""
    phrases = [_phrase(shape, colour, n) for shape, colour, n in groups]
    return f"{phrases[0]} {relation} {phrases[1]}" if relation else phrases[0]


def _phrase(shape: str, colour: str, n: int) -> str:
    noun = shape if n == 1 else _PLURALS.get(shape, shape + "s")
    return f"{_NUMBERS[n]} {colour} {noun}"


def _background(config: ShapesConfig, rng: np.random.Generator, side: int) -> Background:
    grey = int(rng.integers(30, 111))
    textured = config.background == "textured" or (config.background == "mixed" and rng.random() < 0.5)
    if not textured:
        return Background(kind="plain", grey=grey)
    kind = "stripes" if rng.random() < 0.5 else "checks"
    grey2 = int(np.clip(grey + rng.choice([-1, 1]) * rng.integers(20, 41), 0, 140))
    period = float(side * rng.uniform(0.08, 0.2))
    return Background(kind=kind, grey=grey, grey2=grey2, period=max(period, 2.0), angle=float(rng.uniform(0, math.pi)))


def _multi_groups(
    config: ShapesConfig, rng: np.random.Generator
) -> tuple[tuple[tuple[int, int, int], ...], str | None]:
    """One group of 1-3 objects, or two groups ((1, 1), (2, 1) or (1, 2)) with a relation."""
    total = int(rng.integers(1, 4))
    two = total > 1 and rng.random() < (0.5 if total == 2 else 2 / 3)
    counts = ([1, 1] if total == 2 else [[2, 1], [1, 2]][int(rng.integers(2))]) if two else [total]
    first = (int(rng.integers(len(config.shapes))), int(rng.integers(len(config.colours))))
    groups = [(*first, counts[0])]
    if two:
        second = first
        while second == first:  # the caption must tell the two groups apart
            second = (int(rng.integers(len(config.shapes))), int(rng.integers(len(config.colours))))
        groups.append((*second, counts[1]))
    relation = RELATIONS[int(rng.integers(len(RELATIONS)))] if two else None
    return tuple(groups), relation


def _regions(relation: str | None, n_groups: int) -> list[tuple[float, float, float, float] | None]:
    """Per group, the box ``(x0, x1, y0, y1)`` (fractions) its object centres lie in."""
    if relation is None:
        return [None] * n_groups
    halves = {
        "left of": ((0.0, 0.5, 0.0, 1.0), (0.5, 1.0, 0.0, 1.0)),
        "above": ((0.0, 1.0, 0.0, 0.5), (0.0, 1.0, 0.5, 1.0)),
    }
    flipped = {"right of": "left of", "below": "above"}
    if relation in flipped:
        first, second = halves[flipped[relation]]
        return [second, first]
    return list(halves[relation])


def _place(
    rng: np.random.Generator,
    height: int,
    width: int,
    groups: list[tuple[tuple[int, int, int], tuple[float, float, float, float] | None]],
    size_range: tuple[float, float],
) -> list[tuple[tuple[int, int], float, float, float]]:
    """Non-overlapping positions for every object: rejection sampling, shrinking on failure."""
    side = min(height, width)
    placed: list[tuple[tuple[int, int], float, float, float]] = []
    for (shape, colour, n), region in groups:
        x0, x1, y0, y1 = region or (0.0, 1.0, 0.0, 1.0)
        for _ in range(n):
            size = float(rng.uniform(*size_range))
            for attempt in range(200):
                if attempt and attempt % 40 == 0:
                    size *= 0.85
                rx, ry = 0.5 * size * side / width, 0.5 * size * side / height
                x = float(rng.uniform(max(x0, rx), max(min(x1, 1 - rx), max(x0, rx))))
                y = float(rng.uniform(max(y0, ry), max(min(y1, 1 - ry), max(y0, ry))))
                if all(_apart(x, y, size, p, width, height, side) for p in placed):
                    break
            placed.append(((shape, colour), x, y, size))
    return placed


def _apart(
    x: float,
    y: float,
    size: float,
    other: tuple[tuple[int, int], float, float, float],
    width: int,
    height: int,
    side: int,
) -> bool:
    _, ox, oy, osize = other
    distance = math.hypot((x - ox) * width, (y - oy) * height) / side
    return distance >= 0.55 * (size + osize)
