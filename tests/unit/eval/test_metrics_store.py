"""Metrics of any image store: the store's own classifier, fd_store, class_accuracy_store, sw_pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genflow.cli import main
from genflow.data.dataset import StoreDataset
from genflow.data.store import LatentStore
from genflow.errors import GenflowError
from genflow.eval.distances import sliced_wasserstein
from genflow.eval.metrics_store import (
    ClassAccuracyStore,
    FrechetStore,
    PixelDistanceConfig,
    SlicedWassersteinPixels,
    StoreAccuracyConfig,
    StoreFeatureConfig,
    image_store,
)
from genflow.eval.store_classifier import StoreClassifierConfig, decoded_rows, load_or_train
from genflow.interfaces import Condition, EvalContext, EvalSamples

FAST = StoreClassifierConfig(steps=150)


def _bars(root, *, per_class=24, classes=3, labelled=True):
    """8x8 grey images: class k is a bright bar in row 2k + 1 on a dark noisy ground."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / (f"bar{label}" if labelled else "")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (8, 8)).astype(np.uint8)
            pixels[2 * label + 1] = 230
            Image.fromarray(pixels, mode="L").save(folder / f"{label}_{i}.png")
    return root


def _prepare(tmp_path, *extra, labelled=True):
    root = _bars(tmp_path / "bars", labelled=labelled)
    out = tmp_path / "bars.zarr"
    assert main(["prepare", "--dataset", "imagefolder", "--root", str(root), "--resolution", "8", "--multiple", "8",
                 "--out", str(out), "--no-progress", *extra]) == 0
    return str(out)


def _context(url, seed=0):
    return EvalContext(dataset=StoreDataset(LatentStore(url)), path=None, device=torch.device("cpu"), seed=seed)


def _batch(images, labels=None):
    return EvalSamples(samples=images, noise=torch.zeros_like(images), cond=Condition(labels=labels), steps=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFLOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_store_classifier_learns_the_store_and_is_cached(tmp_path, cache):
    url = _prepare(tmp_path, "--holdout", "0.25")
    store, held = LatentStore(url), LatentStore(str(tmp_path / "bars-holdout.zarr"))
    model = load_or_train(store, held, FAST, cache, progress=False)
    assert model.accuracy >= 0.95 and "bars-holdout.zarr" in model.accuracy_on
    again = load_or_train(store, held, FAST, cache, progress=False)
    assert again.path == model.path and again.sha256 == model.sha256
    without = load_or_train(store, None, FAST, cache, progress=False)
    assert without.path != model.path and "kept out of training" in without.accuracy_on
    model.path.write_bytes(model.path.read_bytes() + b"x")
    with pytest.raises(GenflowError, match="fails its checksum"):
        load_or_train(store, held, FAST, cache, progress=False)


def test_fd_and_class_accuracy_of_real_images(tmp_path, cache):
    url = _prepare(tmp_path, "--holdout", "0.25")
    context = _context(url)
    real = decoded_rows(LatentStore(url), np.arange(54))
    fd = FrechetStore(StoreFeatureConfig(reference=0, classifier=FAST))
    accuracy = ClassAccuracyStore(StoreAccuracyConfig(classifier=FAST))
    fd.prepare(context)
    accuracy.prepare(context)
    noise = torch.rand_like(real.images) * 2 - 1
    close, far = fd(_batch(real.images), context), fd(_batch(noise), context)
    assert 0 <= close < far
    assert accuracy(_batch(real.images, real.labels), context) >= 0.95
    assert accuracy(_batch(real.images, (real.labels + 1) % 3), context) <= 0.05
    provenance = fd.provenance(context)
    assert provenance["reference"].endswith("bars-holdout.zarr") and provenance["held_out_accuracy"] >= 0.95


def test_sw_pixels_is_the_sliced_distance_to_the_held_out_images(tmp_path, cache):
    url = _prepare(tmp_path, "--holdout", "0.25")
    context = _context(url, seed=3)
    metric = SlicedWassersteinPixels(PixelDistanceConfig(projections=64))
    metric.prepare(context)
    held = LatentStore(str(tmp_path / "bars-holdout.zarr"))
    real = decoded_rows(held, np.arange(held.count)).images
    assert metric(_batch(real), context) == pytest.approx(0.0, abs=1e-12)  # the same set in another order
    shifted = (real + 0.25).clamp(-1, 1)
    expected = sliced_wasserstein(shifted, real[torch.randperm(len(real))], projections=64, seed=3)
    assert metric(_batch(shifted), context) == pytest.approx(expected, rel=1e-9) and expected > 0


def test_which_stores_the_metrics_apply_to(tmp_path, cache):
    labelled = StoreDataset(LatentStore(_prepare(tmp_path / "a")))
    unlabelled = StoreDataset(LatentStore(_prepare(tmp_path / "b", labelled=False)))
    fd = FrechetStore(StoreFeatureConfig())
    sw = SlicedWassersteinPixels(PixelDistanceConfig())
    accuracy = ClassAccuracyStore(StoreAccuracyConfig())
    assert image_store(labelled) is not None and fd.applies_to(labelled) and sw.applies_to(labelled)
    assert accuracy.applies_to(labelled)
    assert not fd.applies_to(unlabelled) and not accuracy.applies_to(unlabelled) and sw.applies_to(unlabelled)
    context = EvalContext(dataset=unlabelled, path=None, device=torch.device("cpu"), seed=0)
    with pytest.raises(GenflowError, match="needs a store with class labels"):
        fd.prepare(context)
