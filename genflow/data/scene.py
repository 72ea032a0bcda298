"""The description of one ``shapes`` image: what :mod:`genflow.data.shapes` draws at random and
:mod:`genflow.data.shapes_render` renders (a module of its own, so neither imports the other)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class ShapeObject:
    """One object: centre ``x`` / ``y`` as fractions of width / height (y grows downwards),
    ``size`` (the object's extent) as a fraction of the shorter image side."""

    shape: str
    colour: str
    x: float
    y: float
    size: float


@attrs.frozen(kw_only=True)
class Background:
    """``kind``: ``plain``, ``stripes`` or ``checks``; grey levels ``grey`` / ``grey2`` (0-255);
    pattern ``period`` in pixels and stripe ``angle`` in radians."""

    kind: str
    grey: int
    grey2: int = 0
    period: float = 0.0
    angle: float = 0.0


@attrs.frozen(kw_only=True)
class Scene:
    """Everything about one image. ``groups`` are the object counts of the caption's groups (one
    or two); ``relation`` relates the first group to the second; ``label`` is -1 in multi mode."""

    index: int
    height: int
    width: int
    objects: tuple[ShapeObject, ...]
    background: Background
    groups: tuple[int, ...]
    relation: str | None
    caption: str
    label: int
