"""The configs of the store metrics (:mod:`genflow.eval.metrics_store`) and of the classifier they
train (:mod:`genflow.eval.store_classifier`), in a module of their own: registering the metrics (and
so every command's start) needs the configs, not zarr and torch's training code."""

from __future__ import annotations

import attrs

from genflow.config.domains import interval, non_negative, positive, unit

__all__ = ["PixelDistanceConfig", "StoreAccuracyConfig", "StoreClassifierConfig", "StoreFeatureConfig"]


@attrs.frozen(kw_only=True)
class StoreClassifierConfig:
    """``train_count``: most training images used; ``steps`` Adam steps of ``batch_size`` with a
    cosine learning rate from ``lr``; ``noise``, ``blur``: augmentation as for the shapes classifier
    (per-image noise std ``U(0, noise)``, blur std ``U(0, blur)`` pixels on half of each batch);
    ``validation``: fraction of training images held out for the accuracy when the store has no
    held-out split; ``seed``: every random draw."""

    train_count: int = attrs.field(default=20000, validator=interval(10))
    steps: int = attrs.field(default=1500, validator=positive())
    batch_size: int = attrs.field(default=64, validator=positive())
    lr: float = attrs.field(default=3e-3, validator=positive(integer=False))
    noise: float = attrs.field(default=0.15, validator=non_negative(integer=False))
    blur: float = attrs.field(default=0.5, validator=non_negative(integer=False))
    width: int = attrs.field(default=16, validator=positive())
    features: int = attrs.field(default=128, validator=interval(2))
    validation: float = attrs.field(default=0.2, validator=unit(low_open=True, high_open=True))
    seed: int = attrs.field(default=1, validator=non_negative())


@attrs.frozen(kw_only=True)
class StoreFeatureConfig:
    """``reference``: most real images for the statistics (0: as many as samples); ``classifier``:
    how the store's classifier is trained (see ``StoreClassifierConfig``)."""

    reference: int = attrs.field(default=5000, validator=non_negative())
    classifier: StoreClassifierConfig = StoreClassifierConfig()


@attrs.frozen(kw_only=True)
class StoreAccuracyConfig:
    """``classifier``: how the store's classifier is trained (see ``StoreClassifierConfig``)."""

    classifier: StoreClassifierConfig = StoreClassifierConfig()


@attrs.frozen(kw_only=True)
class PixelDistanceConfig:
    """``projections``: random directions of the sliced distance; ``reference``: most real images
    (0: as many as samples; the distance uses ``min(samples, real)`` of each)."""

    projections: int = attrs.field(default=512, validator=positive())
    reference: int = attrs.field(default=0, validator=non_negative())
