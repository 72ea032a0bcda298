"""Metrics of samples of any image store, with no downloaded weights.

``fd_store``: Frechet distance in the features of a classifier trained on the store's own labels
(:mod:`genflow.eval.store_classifier`; lower is better); ``class_accuracy_store``: how often that
classifier sees the class a class-conditioned sample was asked for; ``sw_pixels``: sliced
2-Wasserstein distance between samples and real images in pixel space (any image store, labelled
or not). Real images are the store's held-out split when ``genflow prepare --holdout`` wrote one
(:mod:`genflow.data.splits`), else images of the training store. ``shapes`` stores have their own
metrics (:mod:`genflow.eval.metrics_shapes`), so these apply to every other image store.
"""

from __future__ import annotations

from typing import Any

import attrs
from torch import Tensor

from genflow.components.build import cache_dir
from genflow.data.dataset import StoreDataset
from genflow.data.splits import holdout_store
from genflow.data.store import LatentStore
from genflow.errors import GenflowError
from genflow.eval.distances import sliced_wasserstein
from genflow.eval.frechet import feature_stats, frechet_distance
from genflow.eval.metrics_shapes import REFERENCE_SEED_OFFSET, shapes_config_of
from genflow.eval.store_classifier import (
    StoreClassifier,
    decoded_rows,
    load_or_train,
    sample_rows,
)
from genflow.eval.store_metric_configs import (
    PixelDistanceConfig,
    StoreAccuracyConfig,
    StoreClassifierConfig,
    StoreFeatureConfig,
)
from genflow.interfaces import Dataset, EvalContext, EvalSamples, Metric


def image_store(dataset: Dataset) -> LatentStore | None:
    """The store of an image dataset that is not ``shapes``, else None."""
    if not isinstance(dataset, StoreDataset) or dataset.store.meta.sample_kind != "image":
        return None
    return None if shapes_config_of(dataset) is not None else dataset.store


def _require_store(dataset: Dataset, metric: str, *, labels: bool) -> LatentStore:
    store = image_store(dataset)
    if store is None:
        raise GenflowError(f"metric '{metric}' applies to image stores other than shapes (shapes: fd_shapes, "
                           "class_accuracy)")
    if labels and store.meta.num_classes < 2:
        raise GenflowError(f"metric '{metric}' needs a store with class labels (2 or more classes); store "
                           f"'{store.url}' has none: prepare an image folder of class subfolders, or use sw_pixels")
    return store


def reference_store(context: EvalContext, store: LatentStore) -> LatentStore:
    """The real images of the evaluation: the held-out split, else the training store."""
    return context.memo(f"store/reference/{store.url}", lambda: holdout_store(store) or store)


def reference_images(context: EvalContext, store: LatentStore, n: int) -> Tensor:
    """``min(n, count)`` distinct real images in [-1, 1] (drawn with the eval seed)."""
    real = reference_store(context, store)
    rows = sample_rows(real, n, context.seed + REFERENCE_SEED_OFFSET)
    return context.memo(f"store/reference_images/{real.url}/{n}", lambda: decoded_rows(real, rows).images)


# ------------------------------------------------------------------------------------------------
# classifier metrics
# ------------------------------------------------------------------------------------------------


def _classifier(context: EvalContext, config: StoreClassifierConfig, metric: str) -> StoreClassifier:
    store = _require_store(context.dataset, metric, labels=True)
    held = holdout_store(store)
    key = f"store/classifier/{store.url}/{attrs.astuple(config)}"
    return context.memo(key, lambda: load_or_train(store, held, config, cache_dir(), device=context.device))


def _provenance(context: EvalContext, model: StoreClassifier, store: LatentStore) -> dict[str, Any]:
    return {"classifier": str(model.path), "sha256": model.sha256, "held_out_accuracy": model.accuracy,
            "accuracy_on": model.accuracy_on, "reference": reference_store(context, store).url}


def _sample_features(batch: EvalSamples, model: StoreClassifier) -> Tensor:
    return batch.memo(f"store/features/{model.sha256}", lambda: model.features(batch.samples))


class FrechetStore(Metric):
    """Frechet distance between classifier features of samples and of real images."""

    name = "fd_store"

    def __init__(self, config: StoreFeatureConfig) -> None:
        self.config = config

    def applies_to(self, dataset: Dataset) -> bool:
        store = image_store(dataset)
        return store is not None and store.meta.num_classes >= 2

    def prepare(self, context: EvalContext) -> None:
        _classifier(context, self.config.classifier, self.name)

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        store = _require_store(context.dataset, self.name, labels=True)
        return _provenance(context, _classifier(context, self.config.classifier, self.name), store)

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        store = _require_store(context.dataset, self.name, labels=True)
        model = _classifier(context, self.config.classifier, self.name)
        n = self.config.reference or batch.samples.shape[0]
        real = context.memo(f"store/reference_stats/{model.sha256}/{n}",
                            lambda: feature_stats(model.features(reference_images(context, store, n))))
        return frechet_distance(feature_stats(_sample_features(batch, model)), real)


class ClassAccuracyStore(Metric):
    """Fraction of class-conditioned samples that the store's classifier assigns the asked class."""

    name = "class_accuracy_store"
    higher_is_better = True

    def __init__(self, config: StoreAccuracyConfig) -> None:
        self.config = config

    def applies_to(self, dataset: Dataset) -> bool:
        store = image_store(dataset)
        return store is not None and store.meta.num_classes >= 2 and dataset.spec.num_classes > 0

    def prepare(self, context: EvalContext) -> None:
        _require_store(context.dataset, self.name, labels=True)
        if context.dataset.spec.num_classes == 0:
            raise GenflowError(f"metric '{self.name}' needs a class-conditioned run (data.condition = \"labels\")")
        _classifier(context, self.config.classifier, self.name)

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        store = _require_store(context.dataset, self.name, labels=True)
        return _provenance(context, _classifier(context, self.config.classifier, self.name), store)

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        if batch.cond.labels is None:
            raise GenflowError(f"metric '{self.name}' needs samples conditioned on class labels")
        model = _classifier(context, self.config.classifier, self.name)
        predicted = batch.memo(f"store/predictions/{model.sha256}", lambda: model.classify(_sample_features(batch, model)))
        return float((predicted == batch.cond.labels.cpu()).double().mean())


# ------------------------------------------------------------------------------------------------
# pixel-space distance
# ------------------------------------------------------------------------------------------------


class SlicedWassersteinPixels(Metric):
    """Sliced 2-Wasserstein distance between flattened pixels (in [-1, 1]) of samples and real
    images: no network, so it applies to unlabelled stores too."""

    name = "sw_pixels"

    def __init__(self, config: PixelDistanceConfig) -> None:
        self.config = config

    def applies_to(self, dataset: Dataset) -> bool:
        return image_store(dataset) is not None

    def prepare(self, context: EvalContext) -> None:
        reference_store(context, _require_store(context.dataset, self.name, labels=False))

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        store = _require_store(context.dataset, self.name, labels=False)
        return {"reference": reference_store(context, store).url}

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        store = _require_store(context.dataset, self.name, labels=False)
        n = self.config.reference or batch.samples.shape[0]
        real = reference_images(context, store, n)
        fake = batch.samples.float()
        if fake.shape[1:] != real.shape[1:]:
            raise GenflowError(f"metric '{self.name}': samples of shape {tuple(fake.shape[1:])} but real images of "
                               f"{tuple(real.shape[1:])}")
        count = min(fake.shape[0], real.shape[0])
        return sliced_wasserstein(fake[:count], real[:count], projections=self.config.projections,
                                  seed=context.seed)
