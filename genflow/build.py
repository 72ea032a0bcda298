"""Config -> components: the one place where registered factories are called."""

from __future__ import annotations

import os
import pathlib

import attrs
import torch

from genflow.config import RunConfig
from genflow.interfaces import Backbone, Dataset, DataSpec, Derivative, Objective, ProbabilityPath, Sampler, TextEncoder
from genflow.plugins import PluginManager


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


def _build(manager: PluginManager, config: RunConfig, slot: str, kind: str, **context: object) -> object:
    selection = config.selection(slot)
    return manager.get(kind, selection.name).build(selection.options, **context)


def build_components(config: RunConfig, manager: PluginManager) -> Components:
    """Build data, path, derivative, objective and sampler (in that order: data flows one way)."""
    dataset = _build(manager, config, "data", "dataset", cache_dir=cache_dir())
    assert isinstance(dataset, Dataset)
    spec = dataset.spec
    if spec.text:
        attach_tokenizer(dataset, build_text_encoder(config, manager, spec, meta=True))
    path = _build(manager, config, "path", "path")
    derivative = _build(manager, config, "derivative", "derivative") if config.chosen("derivative") else None
    objective = _build(manager, config, "objective", "objective", path=path, derivative=derivative, spec=spec)
    sampler = _build(manager, config, "sampler", "sampler", path=path, spec=spec)
    return Components(dataset=dataset, spec=spec, path=path, derivative=derivative,  # type: ignore[arg-type]
                      objective=objective, sampler=sampler)  # type: ignore[arg-type]


def build_text_encoder(config: RunConfig, manager: PluginManager, spec: DataSpec, *,
                       meta: bool = False) -> TextEncoder:
    """The run's text encoder (slot ``text_encoder``), on the meta device when ``meta``."""
    with torch.device("meta" if meta else "cpu"):
        encoder = _build(manager, config, "text_encoder", "text_encoder", spec=spec)
    assert isinstance(encoder, TextEncoder)
    return encoder


def attach_tokenizer(dataset: Dataset, encoder: TextEncoder) -> None:
    """Let ``dataset``'s batches carry token ids (``Condition.text``) from ``encoder``'s tokenizer."""
    dataset.attach_tokenizer(encoder.tokenize)


def build_backbone(config: RunConfig, manager: PluginManager, spec: DataSpec, *, meta: bool = False) -> Backbone:
    """The backbone, on the meta device when ``meta`` (then ``to_empty`` + ``init_weights``).

    For caption-conditioned data (``spec.text``) it is the text encoder and the backbone as one
    module (``genflow.text.conditioned.TextConditioned``), the backbone built for the encoder's
    state width ``spec.text_dim``."""
    encoder = build_text_encoder(config, manager, spec, meta=meta) if spec.text else None
    if encoder is not None:
        spec = attrs.evolve(spec, text_dim=encoder.dim)
    with torch.device("meta" if meta else "cpu"):
        backbone = _build(manager, config, "backbone", "backbone", spec=spec)
    assert isinstance(backbone, Backbone)
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
