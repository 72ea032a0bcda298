"""The compositional prompt metric: caption parsing, the analytic detector on real images (about
100%), and wrong images scoring low."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genflow.data.shapes import ShapesConfig, render_scenes, scene_attributes
from genflow.eval import compositional as C
from genflow.eval.metrics_prompts import PromptAccuracy

CONFIG = ShapesConfig(resolution=32, mode="multi")


def test_parse_caption():
    prompt = C.parse_caption("two red circles left of a blue square")
    assert prompt is not None and prompt.relation == "left of"
    assert prompt.groups == (C.Group(count=2, colour="red", shape="circle"), C.Group(count=1, colour="blue", shape="square"))
    assert C.parse_caption("three green crosses").groups == (C.Group(count=3, colour="green", shape="cross"),)
    for bad in ("", "a red", "a purple cat", "two red circles near a blue square", "x" * 10_000):
        assert C.parse_caption(bad) is None


def test_prompt_set_is_fixed_and_held_out():
    prompts = C.prompt_set(CONFIG, 50)
    assert prompts == C.prompt_set(CONFIG, 50)
    training = [scene_attributes(CONFIG, i).caption for i in range(50)]
    assert prompts != training and all(C.parse_caption(p) is not None for p in prompts)


@pytest.fixture(scope="module")
def real():
    """Real images of the prompt set's scenes (what a perfect model would draw), as [-1, 1] tensors."""
    held_out = ShapesConfig(resolution=32, mode="multi", seed=CONFIG.seed + C.PROMPT_SEED_OFFSET)
    scenes = [scene_attributes(held_out, i) for i in range(150)]
    images = torch.from_numpy(render_scenes(scenes)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return images, [s.caption for s in scenes]


def _mean(scores, key):
    values = [s[key] for s in scores if not math.isnan(s[key])]
    return float(np.mean(values))


def test_real_images_score_about_100_percent(real):
    images, captions = real
    scores = C.score_images(images, captions, CONFIG.colours, CONFIG.shapes)
    assert all(s is not None for s in scores)
    for key in ("colour", "count", "position"):
        assert _mean(scores, key) >= 0.99, key
    assert _mean(scores, "shape") >= 0.95 and _mean(scores, "overall") >= 0.95


def test_mismatched_images_score_low(real):
    images, captions = real
    shuffled = captions[1:] + captions[:1]
    scores = C.score_images(images, shuffled, CONFIG.colours, CONFIG.shapes)
    assert _mean(scores, "overall") < 0.2
    blank = torch.full_like(images[:4], -0.4)  # grey background, nothing drawn
    assert C.detect(C.to_uint8(blank)[0], CONFIG.colours, CONFIG.shapes) == []


def test_single_object_subset(real):
    images, captions = real
    from genflow.interfaces import EvalSamples

    batch = EvalSamples(samples=images, noise=images, captions=captions)

    class Context:
        dataset = None

    import genflow.eval.metrics_prompts as mp

    original = mp.shapes_config_of
    mp.shapes_config_of = lambda dataset: CONFIG
    try:
        single = PromptAccuracy("shape", single=True)(batch, Context())  # type: ignore[arg-type]
        position = PromptAccuracy("position")(batch, Context())  # type: ignore[arg-type]
    finally:
        mp.shapes_config_of = original
    assert single >= 0.95 and position >= 0.99


def test_one_object_images_score_100_percent():
    held_out = ShapesConfig(resolution=32, mode="single", seed=C.PROMPT_SEED_OFFSET)
    scenes = [scene_attributes(held_out, i) for i in range(48)]
    images = torch.from_numpy(render_scenes(scenes)).permute(0, 3, 1, 2).float() / 127.5 - 1
    scores = C.score_images(images, [s.caption for s in scenes], held_out.colours, held_out.shapes)
    assert _mean(scores, "overall") == 1.0
