"""Every pluggy hook genflow calls. Plugins implement them with ``@genflow.hookimpl``.

Registration hooks return lists of :class:`genflow.registry.Component`; each component names an
attrs config class and a ``build`` factory called with keyword arguments, per kind (typed by the
protocols ``genflow.registry.PathFactory``, ``ObjectiveFactory``, ...):

============  ======================================================  =================================
kind          ``build(config, ...)``                                  returns
============  ======================================================  =================================
path          ``build(config)``                                       ``ProbabilityPath``
derivative    ``build(config)``                                       ``Derivative``
backbone      ``build(config, spec=DataSpec)``                        ``Backbone``
objective     ``build(config, path=, derivative=, spec=DataSpec)``    ``Objective``
sampler       ``build(config, path=ProbabilityPath, spec=DataSpec)``  ``Sampler``
dataset       ``build(config, cache_dir=pathlib.Path)``               ``Dataset``
autoencoder   ``build(config)``                                       autoencoder
metric        ``build(config)``                                       ``Metric``
text_encoder  ``build(config, spec=DataSpec)``                        ``TextEncoder``
importer      ``build(config)``                                       ``fn(file, preset, out, manager)``
============  ======================================================  =================================

Lifecycle hooks are called by the trainer with keyword arguments, on every rank, never inside a
forward or backward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import pathlib

    from genflow.config.schema import RunConfig
    from genflow.registry import Component

PROJECT = "genflow"
hookspec = pluggy.HookspecMarker(PROJECT)


@hookspec
def genflow_paths() -> list[Component]:
    """Interpolation paths (``ProbabilityPath``)."""
    raise NotImplementedError


@hookspec
def genflow_derivatives() -> list[Component]:
    """Time-derivative providers (``Derivative``)."""
    raise NotImplementedError


@hookspec
def genflow_backbones() -> list[Component]:
    """Networks ``F_theta(x_t, t, r, cond)`` (``Backbone``)."""
    raise NotImplementedError


@hookspec
def genflow_objectives() -> list[Component]:
    """Training objectives (``Objective``)."""
    raise NotImplementedError


@hookspec
def genflow_samplers() -> list[Component]:
    """Samplers (``Sampler``)."""
    raise NotImplementedError


@hookspec
def genflow_datasets() -> list[Component]:
    """Datasets and latent stores (``Dataset``)."""
    raise NotImplementedError


@hookspec
def genflow_autoencoders() -> list[Component]:
    """Autoencoders that map images to latents for ``genflow prepare``."""
    raise NotImplementedError


@hookspec
def genflow_metrics() -> list[Component]:
    """Evaluation metrics (``Metric``)."""
    raise NotImplementedError


@hookspec
def genflow_text_encoders() -> list[Component]:
    """Text encoders (``TextEncoder``: tokenizer + network, captions -> states ``(N, L, D)``) for
    caption-conditioned data; built only when ``DataSpec.text``. A pretrained encoder from another
    library registers here and loads (and freezes) its weights in ``init_weights``."""
    raise NotImplementedError


@hookspec
def genflow_importers() -> list[Component]:
    """Importers of weights trained elsewhere (``genflow import NAME FILE --preset P --out RUN``):
    ``build(config)`` returns ``fn(file, preset, out, manager)``, which checks everything, writes
    the run folder ``out`` (``config.toml``, ``model.pt``) and returns its path; ``genflow import
    --null-caption FILE`` adds the keyword ``null_caption=pathlib.Path`` (text-to-image models)."""
    raise NotImplementedError


@hookspec
def genflow_configure(config: RunConfig) -> None:
    """Called once with the resolved run config, before anything is built. Raise
    ``genflow.errors.ConfigError`` to reject a combination."""


@hookspec
def genflow_train_start(config: RunConfig, run_dir: pathlib.Path, step: int) -> None:
    """Training is about to run its first (or resumed) step."""


@hookspec
def genflow_train_step_end(step: int, logs: dict[str, float]) -> None:
    """A training step finished; ``logs`` holds its scalars."""


@hookspec
def genflow_checkpoint_saved(step: int, path: pathlib.Path) -> None:
    """A checkpoint was written completely to ``path``."""


@hookspec
def genflow_train_end(step: int, run_dir: pathlib.Path) -> None:
    """Training finished normally. Finish any work here: a multi-rank run's processes then exit
    without the interpreter's teardown (no atexit handlers)."""
