"""The built-in metrics, as registry components (``genflow_metrics`` of the built-in plugin)."""

from __future__ import annotations

from genflow.eval import metrics_external as external
from genflow.eval import metrics_prompts as prompts
from genflow.eval import metrics_shapes as shapes
from genflow.eval import metrics_toy as toy
from genflow.eval import store_metric_configs as store_configs
from genflow.registry import Component


def _store():  # noqa: ANN202
    """:mod:`genflow.eval.metrics_store`, imported when a store metric is built (it imports zarr)."""
    from genflow.eval import metrics_store

    return metrics_store


def _attribute(attribute: str) -> Component:
    return Component(
        name=f"{attribute}_accuracy",
        config=shapes.AttributeConfig,
        build=lambda config: shapes.AttributeAccuracy(config, attribute),
        description=f"shapes: fraction of class-conditioned samples showing the {attribute} asked for",
    )


def components() -> list[Component]:
    """Every built-in metric."""
    return [
        Component(name="sliced_wasserstein", config=toy.SlicedWassersteinConfig,
                  build=lambda config: toy.SlicedWasserstein(config),
                  description="points: sliced 2-Wasserstein distance to fresh data"),
        Component(name="transition_error", config=toy.TransitionErrorConfig,
                  build=lambda config: toy.TransitionError(config),
                  description="toy2d mixtures: mean |sample - exact flow map of its noise|"),
        Component(name="fd_shapes", config=shapes.ShapesFeatureConfig,
                  build=lambda config: shapes.FrechetShapes(config),
                  description="shapes: Frechet distance in the shapes classifier's features"),
        Component(name="precision_shapes", config=shapes.ShapesFeatureConfig,
                  build=lambda config: shapes.PrecisionShapes(config),
                  description="shapes: k-NN precision in the shapes classifier's features"),
        Component(name="recall_shapes", config=shapes.ShapesFeatureConfig,
                  build=lambda config: shapes.RecallShapes(config),
                  description="shapes: k-NN recall in the shapes classifier's features"),
        _attribute("class"),
        _attribute("shape"),
        _attribute("colour"),
        Component(name="fd_store", config=store_configs.StoreFeatureConfig,
                  build=lambda config: _store().FrechetStore(config),
                  description="labelled image stores: Frechet distance in the features of a classifier "
                              "trained on the store's own labels"),
        Component(name="class_accuracy_store", config=store_configs.StoreAccuracyConfig,
                  build=lambda config: _store().ClassAccuracyStore(config),
                  description="labelled image stores: fraction of class-conditioned samples the store's "
                              "classifier assigns the asked class"),
        Component(name="sw_pixels", config=store_configs.PixelDistanceConfig,
                  build=lambda config: _store().SlicedWassersteinPixels(config),
                  description="image stores: sliced Wasserstein distance to real images in pixel space"),
        Component(name="fid_inception", config=external.ExternalFeatureConfig,
                  build=lambda config: external.InceptionFID(config),
                  description="images: Inception FID from user-given weights (never downloaded)"),
        Component(name="fd_dinov2", config=external.ExternalFeatureConfig,
                  build=lambda config: external.DinoV2FD(config),
                  description="images: FD-DINOv2 from a user-given network file (never downloaded)"),
        *prompts.components(),
    ]
