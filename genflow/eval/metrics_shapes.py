"""Metrics of ``shapes`` samples in the feature space of the shapes classifier.

``fd_shapes``: Frechet distance of classifier features (lower is better); ``precision_shapes`` /
``recall_shapes``: k-NN manifold precision and recall in the same space; ``class_accuracy``,
``shape_accuracy``, ``colour_accuracy``: how often the classifier sees the class (shape, colour)
that a class-conditioned sample was asked for. Real images are the run's own dataset
(``dataset.reference``, decoded like the samples); the classifier matches the dataset's
resolution, vocabulary and background and is trained once and cached (:mod:`genflow.eval.classifier`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import attrs
import torch
from torch import Tensor

from genflow.components.build import cache_dir
from genflow.config.domains import non_negative, positive, text
from genflow.data.shapes import ShapesConfig
from genflow.errors import GenflowError
from genflow.eval import classifier as clf
from genflow.eval.frechet import feature_stats, frechet_distance
from genflow.eval.prdc import precision_recall
from genflow.interfaces import Dataset, EvalContext, EvalSamples, Metric

REFERENCE_SEED_OFFSET = 7  # real images never share the noise seed


def shapes_config_of(dataset: Dataset) -> ShapesConfig | None:
    """The generator config of a dataset read from a ``shapes`` store, else None."""
    from genflow.data.dataset import StoreDataset  # here: zarr is slow to import (every command's start)

    if not isinstance(dataset, StoreDataset) or dataset.store.meta.sample_kind != "image":
        return None
    source = dataset.store.meta.source
    if source.get("dataset") != "shapes":
        return None
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in source.get("config", {}).items()}
    try:
        return ShapesConfig(**fields)
    except TypeError:  # a store written by another version of the generator
        return None


def classifier_config(shapes: ShapesConfig) -> clf.ClassifierConfig:
    """The classifier that sees what ``shapes`` draws."""
    return clf.ClassifierConfig(resolution=shapes.resolution, shapes=shapes.shapes, colours=shapes.colours,
                                background=shapes.background)


def _require_shapes(dataset: Dataset, metric: str) -> ShapesConfig:
    shapes = shapes_config_of(dataset)
    if shapes is None:
        raise GenflowError(f"metric '{metric}' applies to the shapes dataset only (or a store prepared from it)")
    return shapes


def _classifier(context: EvalContext, weights: str, metric: str) -> clf.TrainedClassifier:
    """The shapes classifier of ``context``'s dataset: ``weights`` if given, else the cached one."""
    shapes = _require_shapes(context.dataset, metric)

    def load() -> clf.TrainedClassifier:
        if weights:
            return clf.load(pathlib.Path(weights).expanduser(), context.device)
        return clf.load_or_train(classifier_config(shapes), cache_dir(), device=context.device)

    return context.memo(f"shapes/classifier/{weights}", load)


def _classifier_provenance(model: clf.TrainedClassifier) -> dict[str, Any]:
    return {"classifier": str(model.path), "sha256": model.sha256, "held_out_accuracy": model.accuracy}


def _decoded_reference(context: EvalContext, n: int) -> Tensor:
    """``n`` real images of the dataset in [-1, 1] (decoded in chunks)."""
    x = context.dataset.reference(n, seed=context.seed + REFERENCE_SEED_OFFSET).x
    return torch.cat([context.dataset.decode(x[i:i + 512].to(context.device)).cpu() for i in range(0, n, 512)])


def _reference_features(context: EvalContext, model: clf.TrainedClassifier, n: int) -> Tensor:
    key = f"shapes/reference_features/{model.sha256}/{n}"
    return context.memo(key, lambda: model.features(_decoded_reference(context, n)))


def _sample_features(batch: EvalSamples, model: clf.TrainedClassifier) -> Tensor:
    return batch.memo(f"shapes/features/{model.sha256}", lambda: model.features(batch.samples))


@attrs.frozen(kw_only=True)
class ShapesFeatureConfig:
    """``classifier``: a weights file (with its ``.json`` checksum sidecar) instead of the cached
    classifier; ``reference``: real images (0: as many as samples); ``k``: neighbours (precision
    and recall only)."""

    classifier: str = attrs.field(default="", validator=text(empty=True))
    reference: int = attrs.field(default=5000, validator=non_negative())
    k: int = attrs.field(default=3, validator=positive())


class _ShapesMetric(Metric):
    name = "shapes metric"

    def __init__(self, config: ShapesFeatureConfig) -> None:
        self.config = config

    def applies_to(self, dataset: Dataset) -> bool:
        return shapes_config_of(dataset) is not None

    def prepare(self, context: EvalContext) -> None:
        _classifier(context, self.config.classifier, self.name)

    def model(self, context: EvalContext) -> clf.TrainedClassifier:
        return _classifier(context, self.config.classifier, self.name)

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        return _classifier_provenance(self.model(context))


class FrechetShapes(_ShapesMetric):
    """Frechet distance between classifier features of samples and of ``reference`` real images."""

    name = "fd_shapes"

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        model = self.model(context)
        n = self.config.reference or batch.samples.shape[0]
        real = context.memo(f"shapes/reference_stats/{model.sha256}/{n}",
                            lambda: feature_stats(_reference_features(context, model, n)))
        return frechet_distance(feature_stats(_sample_features(batch, model)), real)


def _precision_recall(batch: EvalSamples, context: EvalContext, model: clf.TrainedClassifier, k: int) -> tuple[float, float]:
    """Both numbers at once (they share the k-NN radii), against as many real images as samples."""

    def compute() -> tuple[float, float]:
        fake = _sample_features(batch, model)
        return precision_recall(_reference_features(context, model, fake.shape[0]), fake, k=k)

    return batch.memo(f"shapes/precision_recall/{model.sha256}/{k}", compute)


class PrecisionShapes(_ShapesMetric):
    """Fraction of samples inside the k-NN manifold of real features (Kynkaanniemi et al. 2019)."""

    name = "precision_shapes"
    higher_is_better = True

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        return _precision_recall(batch, context, self.model(context), self.config.k)[0]


class RecallShapes(_ShapesMetric):
    """Fraction of real images inside the k-NN manifold of sample features."""

    name = "recall_shapes"
    higher_is_better = True

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        return _precision_recall(batch, context, self.model(context), self.config.k)[1]


@attrs.frozen(kw_only=True)
class AttributeConfig:
    """``classifier``: a weights file instead of the cached classifier."""

    classifier: str = attrs.field(default="", validator=text(empty=True))


class AttributeAccuracy(Metric):
    """Fraction of class-conditioned samples whose ``attribute`` (``class``, ``shape`` or ``colour``),
    as the classifier sees it, is the one asked for. Class ``c`` has shape ``c // len(colours)``
    and colour ``c % len(colours)``."""

    higher_is_better = True

    def __init__(self, config: AttributeConfig, attribute: str) -> None:
        self.config = config
        self.attribute = attribute
        self.name = f"{attribute}_accuracy"

    def applies_to(self, dataset: Dataset) -> bool:
        shapes = shapes_config_of(dataset)
        return shapes is not None and shapes.mode == "single" and dataset.spec.num_classes > 0

    def prepare(self, context: EvalContext) -> None:
        shapes = _require_shapes(context.dataset, self.name)
        if shapes.mode != "single" or context.dataset.spec.num_classes == 0:
            raise GenflowError(f"metric '{self.name}' needs a class-conditioned run on single-object shapes "
                               "(data.mode = \"single\", labels as the condition)")
        _classifier(context, self.config.classifier, self.name)

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        return _classifier_provenance(_classifier(context, self.config.classifier, self.name))

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        if batch.cond.labels is None:
            raise GenflowError(f"metric '{self.name}' needs samples conditioned on class labels")
        model = _classifier(context, self.config.classifier, self.name)
        predicted = batch.memo(f"shapes/predictions/{model.sha256}",
                               lambda: model.classify(_sample_features(batch, model)))
        asked = batch.cond.labels.cpu()
        colours = len(model.config.colours)
        if self.attribute == "shape":
            predicted, asked = predicted // colours, asked // colours
        elif self.attribute == "colour":
            predicted, asked = predicted % colours, asked % colours
        return float((predicted == asked).double().mean())
