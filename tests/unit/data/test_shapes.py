"""The procedural shapes generator: determinism, exact labels, captions that match the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from genflow.data.shapes import (
    COLOURS,
    ShapesConfig,
    class_names,
    render_scenes,
    scene_attributes,
    validate,
)
from genflow.errors import GenflowError


def test_scene_is_a_pure_function_of_seed_and_index():
    config = ShapesConfig(mode="multi", background="mixed")
    assert scene_attributes(config, 7) == scene_attributes(config, 7)
    assert scene_attributes(config, 7) != scene_attributes(config, 8)
    assert scene_attributes(config, 7) != scene_attributes(ShapesConfig(mode="multi", seed=1), 7)
    a = render_scenes([scene_attributes(config, i) for i in range(4)])
    b = render_scenes([scene_attributes(config, i) for i in (0, 1, 2, 3)])
    np.testing.assert_array_equal(a, b)


def test_single_mode_labels_and_captions():
    config = ShapesConfig(resolution=24)
    names = class_names(config)
    assert len(names) == len(config.shapes) * len(config.colours) == 16
    for i in range(60):
        scene = scene_attributes(config, i)
        (obj,) = scene.objects
        expected = config.shapes.index(obj.shape) * len(config.colours) + config.colours.index(obj.colour)
        assert scene.label == expected
        assert names[scene.label] == f"{obj.colour} {obj.shape}"
        assert scene.caption == f"a {obj.colour} {obj.shape}"


def test_object_centre_has_its_exact_colour():
    config = ShapesConfig(resolution=32, shapes=("circle", "square", "triangle", "star", "diamond", "cross"))
    scenes = [scene_attributes(config, i) for i in range(40)]
    images = render_scenes(scenes)
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    for scene, image in zip(scenes, images, strict=True):
        (obj,) = scene.objects
        y, x = int(obj.y * 32), int(obj.x * 32)
        assert tuple(image[y, x]) == COLOURS[obj.colour]


@pytest.mark.parametrize("index", range(150))
def test_multi_mode_relations_hold_in_positions(index):
    config = ShapesConfig(mode="multi", resolution=32)
    scene = scene_attributes(config, index)
    assert scene.label == -1
    assert 1 <= len(scene.objects) == sum(scene.groups) <= 3
    assert scene.caption.split()[0] in ("a", "two", "three")
    if scene.relation is None:
        return
    first, second = scene.objects[: scene.groups[0]], scene.objects[scene.groups[0] :]
    axis = "x" if scene.relation in ("left of", "right of") else "y"
    before = scene.relation in ("left of", "above")
    a = [getattr(o, axis) for o in first]
    b = [getattr(o, axis) for o in second]
    assert (max(a) < min(b)) if before else (min(a) > max(b))
    assert scene.relation in scene.caption
    assert (first[0].shape, first[0].colour) != (second[0].shape, second[0].colour)


def test_aspect_ratios_give_grid_aligned_sizes():
    config = ShapesConfig(resolution=32, aspect_ratios=(0.5, 1.0, 2.0), multiple=8)
    sizes = {(s.height, s.width) for s in (scene_attributes(config, i) for i in range(30))}
    assert sizes == {(48, 24), (32, 32), (24, 48)}


@pytest.mark.parametrize(
    "fields",
    [{"shapes": ("circle", "hexagon")}, {"colours": ()}, {"resolution": 4}, {"aspect_ratios": (9.0,)}],
)
def test_invalid_configs_name_what_is_allowed(fields):
    with pytest.raises(GenflowError) as err:
        validate(ShapesConfig(**fields))
    assert "\n" not in str(err.value)
