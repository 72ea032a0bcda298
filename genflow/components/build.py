"""Config -> components: the one place where registered factories are called."""

from __future__ import annotations

import os
import pathlib
from typing import Any, TypeVar, cast

import attrs
import torch

from genflow.config import SLOTS, RunConfig
from genflow.errors import GenflowError
from genflow.interfaces import Backbone, Dataset, DataSpec, Derivative, Objective, ProbabilityPath, Sampler, TextEncoder
from genflow.plugins import PluginManager
from genflow.registry import (
    BackboneFactory,
    DatasetFactory,
    DerivativeFactory,
    ObjectiveFactory,
    PathFactory,
    SamplerFactory,
    TextEncoderFactory,
)

T = TypeVar("T")


def cache_dir() -> pathlib.Path:
    """Where built-in datasets are prepared on first use (``GENFLOW_CACHE`` or ~/.cache/genflow)."""
    root = os.environ.get("GENFLOW_CACHE") or pathlib.Path.home() / ".cache" / "genflow"
    return pathlib.Path(root)


@attrs.frozen(kw_only=True)
class Components:
    """Everything a run needs except the backbone's weights."""

    dataset: Dataset
    spec: DataSpec
    path: ProbabilityPath
    #: None when the objective needs no time derivative (the config's ``derivative`` slot is empty).
    derivative: Derivative | None
    objective: Objective
    sampler: Sampler


def _chosen(manager: PluginManager, config: RunConfig, slot: str) -> tuple[Any, Any]:
    """The ``build`` factory of ``slot``'s chosen component and the options it is built with."""
    selection = config.selection(slot)
    return manager.get(SLOTS[slot], selection.name).build, selection.options


def _checked(built: T, cls: type, config: RunConfig, slot: str) -> T:
    """``built`` if it is a ``cls`` (plugins are not type-checked); else one line naming the
    component and what it returned."""
    if not isinstance(built, cls):
        name = config.selection(slot).name
        raise GenflowError(f"{slot} '{name}': its build returned {type(built).__name__}, not a {cls.__name__}")
    return built


def build_components(config: RunConfig, manager: PluginManager) -> Components:
    """Build data, path, derivative, objective and sampler (in that order: data flows one way)."""
    dataset_factory, options = _chosen(manager, config, "data")
    dataset = _checked(cast(DatasetFactory, dataset_factory)(options, cache_dir=cache_dir()), Dataset, config, "data")
    spec = dataset.spec
    if spec.text:
        dataset.attach_tokenizer(build_text_encoder(config, manager, spec, meta=True).tokenize)
    path_factory, options = _chosen(manager, config, "path")
    path = _checked(cast(PathFactory, path_factory)(options), ProbabilityPath, config, "path")
    derivative = None
    if config.chosen("derivative"):
        derivative_factory, options = _chosen(manager, config, "derivative")
        derivative = _checked(cast(DerivativeFactory, derivative_factory)(options), Derivative, config, "derivative")
    objective = build_objective(config, manager, path=path, derivative=derivative, spec=spec)
    sampler_factory, options = _chosen(manager, config, "sampler")
    sampler = _checked(cast(SamplerFactory, sampler_factory)(options, path=path, spec=spec), Sampler, config,
                       "sampler")
    return Components(dataset=dataset, spec=spec, path=path, derivative=derivative, objective=objective,
                      sampler=sampler)


def build_objective(config: RunConfig, manager: PluginManager, *, path: ProbabilityPath,
                    derivative: Derivative | None, spec: DataSpec) -> Objective:
    """The run's objective over ``path`` with ``derivative`` (a provider other than the config's, to
    compare providers on one objective)."""
    factory, options = _chosen(manager, config, "objective")
    objective = cast(ObjectiveFactory, factory)(options, path=path, derivative=derivative, spec=spec)
    return _checked(objective, Objective, config, "objective")


def build_text_encoder(config: RunConfig, manager: PluginManager, spec: DataSpec, *,
                       meta: bool = False) -> TextEncoder:
    """The run's text encoder (slot ``text_encoder``), on the meta device when ``meta``."""
    factory, options = _chosen(manager, config, "text_encoder")
    with torch.device("meta" if meta else "cpu"):
        encoder = cast(TextEncoderFactory, factory)(options, spec=spec)
    return _checked(encoder, TextEncoder, config, "text_encoder")


def build_backbone(config: RunConfig, manager: PluginManager, spec: DataSpec, *, meta: bool = False) -> Backbone:
    """The backbone, on the meta device when ``meta`` (then ``to_empty`` + ``init_weights``).

    For caption-conditioned data (``spec.text``) it is the text encoder and the backbone as one
    module (``genflow.text.conditioned.TextConditioned``), the backbone built for the encoder's
    state width ``spec.text_dim``."""
    encoder = build_text_encoder(config, manager, spec, meta=meta) if spec.text else None
    if encoder is not None:
        spec = attrs.evolve(spec, text_dim=encoder.dim)
    factory, options = _chosen(manager, config, "backbone")
    with torch.device("meta" if meta else "cpu"):
        backbone = _checked(cast(BackboneFactory, factory)(options, spec=spec), Backbone, config, "backbone")
    if encoder is None:
        return backbone
    from genflow.text.conditioned import TextConditioned

    return TextConditioned(backbone, encoder)


def materialize(backbone: Backbone, device: torch.device, seed: int) -> Backbone:
    """Allocate a meta-built backbone on ``device`` and initialise it reproducibly from ``seed``."""
    backbone.to_empty(device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone.init_weights()
    return backbone
