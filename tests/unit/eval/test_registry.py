"""Every registered metric builds from its default config and answers the Metric interface."""

from __future__ import annotations

import pytest

from genflow.data.toy2d import Toy2D, Toy2DConfig
from genflow.interfaces import Metric

BUILTIN = {"sliced_wasserstein", "transition_error", "fd_shapes", "precision_shapes", "recall_shapes",
           "class_accuracy", "shape_accuracy", "colour_accuracy", "fid_inception", "fd_dinov2"}


def test_builtin_metrics_are_registered(manager):
    assert set(manager.names("metric")) >= BUILTIN
    assert all(manager.components["metric"][n].plugin == "genflow" for n in BUILTIN)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_metric_builds_with_defaults(manager, name):
    component = manager.get("metric", name)
    metric = component.build(component.config())
    assert isinstance(metric, Metric) and isinstance(metric.higher_is_better, bool)
    fits_toy = metric.applies_to(Toy2D(Toy2DConfig()))
    assert fits_toy == (name in {"sliced_wasserstein", "transition_error"})
