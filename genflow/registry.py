"""Component registrations returned by the ``genflow_*`` registration hooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    import pathlib

    from genflow.interfaces import (
        Backbone,
        Dataset,
        DataSpec,
        Derivative,
        Objective,
        ProbabilityPath,
        Sampler,
        TextEncoder,
    )

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
    settings; ``build(config, **context)`` makes the component: its keyword arguments per kind are
    the factory protocols below (``ObjectiveFactory``, ...; the table in ``genflow.hookspecs``).
    ``defaults`` suggests selections for other slots when the user leaves them unset, e.g. an
    objective names its sampler (``{"sampler": "transition"}``), a dataset its backbone.
    """

    name: str
    build: Callable[..., Any]
    config: type = EmptyConfig
    description: str = ""
    defaults: Mapping[str, str] = attrs.field(factory=dict)


class PathFactory(Protocol):
    """``build`` of a ``path`` component."""

    def __call__(self, config: Any) -> ProbabilityPath: ...


class DerivativeFactory(Protocol):
    """``build`` of a ``derivative`` component."""

    def __call__(self, config: Any) -> Derivative: ...


class BackboneFactory(Protocol):
    """``build`` of a ``backbone`` component: the network for samples of ``spec``."""

    def __call__(self, config: Any, *, spec: DataSpec) -> Backbone: ...


class ObjectiveFactory(Protocol):
    """``build`` of an ``objective`` component; ``derivative`` is None when the config's slot is empty."""

    def __call__(self, config: Any, *, path: ProbabilityPath, derivative: Derivative | None,
                 spec: DataSpec) -> Objective: ...


class SamplerFactory(Protocol):
    """``build`` of a ``sampler`` component."""

    def __call__(self, config: Any, *, path: ProbabilityPath, spec: DataSpec) -> Sampler: ...


class DatasetFactory(Protocol):
    """``build`` of a ``dataset`` component; ``cache_dir`` is where built-in data are prepared."""

    def __call__(self, config: Any, *, cache_dir: pathlib.Path) -> Dataset: ...


class TextEncoderFactory(Protocol):
    """``build`` of a ``text_encoder`` component for caption-conditioned data of ``spec``."""

    def __call__(self, config: Any, *, spec: DataSpec) -> TextEncoder: ...
