"""Component registrations returned by the ``genflow_*`` registration hooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

#: Every registration hook, by component kind.
KINDS: dict[str, str] = {
    "objective": "genflow_objectives",
    "derivative": "genflow_derivatives",
    "backbone": "genflow_backbones",
    "sampler": "genflow_samplers",
    "path": "genflow_paths",
    "dataset": "genflow_datasets",
    "autoencoder": "genflow_autoencoders",
    "metric": "genflow_metrics",
    "text_encoder": "genflow_text_encoders",
    "importer": "genflow_importers",
}


@attrs.frozen(kw_only=True)
class EmptyConfig:
    """Config of a component without options."""


@attrs.frozen(kw_only=True)
class Component:
    """One registered component.

    ``config`` is an attrs class (``kw_only``, ``frozen``) whose defaults are the recommended
    settings; ``build(config, **context)`` makes the component (see ``genflow.hookspecs``).
    ``defaults`` suggests selections for other slots when the user leaves them unset, e.g. an
    objective names its sampler (``{"sampler": "transition"}``), a dataset its backbone.
    """

    name: str
    build: Callable[..., Any]
    config: type = EmptyConfig
    description: str = ""
    defaults: Mapping[str, str] = attrs.field(factory=dict)
