"""The run config: one slot per extension point plus the trainer's and sampler's own settings."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from genflow.config.domains import each, finite, non_negative, positive, unit
from genflow.errors import ConfigError

#: Component slots of a run, in the order they are resolved, with the registry kind of each.
SLOTS: dict[str, str] = {
    "data": "dataset",
    "path": "path",
    "objective": "objective",
    "derivative": "derivative",
    "backbone": "backbone",
    "sampler": "sampler",
    "text_encoder": "text_encoder",
}

#: Used for a slot that neither the config, a selector nor another component's ``defaults`` names.
#: Only the core's own components: a default never names a plugin's component, so genflow resolves
#: a config with any plugin blocked. The objective and the sampler have no default (a preset, a
#: selector or the objective's ``defaults`` names them).
SLOT_DEFAULTS: dict[str, str] = {
    "data": "toy2d",
    "path": "linear",
    "backbone": "mlp",
    "text_encoder": "transformer",
}

#: Slots left empty (``None``) when nothing names them: only objectives that need ``dF/dt`` ask for a
#: derivative provider (``Component.defaults``, e.g. ``tim`` suggests ``dde``).
OPTIONAL_SLOTS: tuple[str, ...] = ("derivative",)


@attrs.frozen(kw_only=True)
class Selection:
    """A chosen component: its registered ``name`` and its structured ``options``."""

    name: str
    options: Any


@attrs.frozen(kw_only=True)
class TrainConfig:
    """The trainer's settings. ``batch_size`` is the global batch (split across ranks).

    ``max_minutes`` > 0 ends training early (with the usual final checkpoint, weights and samples)
    once the loop has run that long: a wall-clock budget for demos and time-limited jobs. Runs that
    finish their ``steps`` first are unaffected.

    ``compile`` runs each FSDP unit of the backbone (a transformer block; the whole backbone if it
    has none) through ``torch.compile`` with static shapes (one graph per batch shape the training
    step feeds it; sample previews run eagerly); ``compile_mode`` is ``torch.compile``'s ``mode``:
    ``"reduce-overhead"`` replays CUDA graphs (no per-kernel launch cost on the host).
    ``compile_tuning`` also tunes the launch settings of inductor's generated kernels (its
    ``coordinate_descent_tuning``): longer compilation for faster steps, worth it for long runs
    (docs/performance.md section 3).

    ``activation_checkpointing`` recomputes each FSDP unit of the backbone (``Backbone.fsdp_units``:
    its transformer or residual blocks) in the backward pass instead of keeping its activations:
    less memory, one more forward per unit, the same gradients.

    ``dist_timeout_minutes`` bounds how long a rank waits for the others (joining, each
    collective) before it fails; 0 is 2 minutes on CPU and 10 on GPUs (docs/runs.md).
    """

    #: Optimizer steps; 0 writes the run folder and the initial weights only.
    steps: int = attrs.field(default=2000, validator=non_negative())
    batch_size: int = attrs.field(default=256, validator=positive())
    lr: float = attrs.field(default=1e-3, validator=positive(integer=False))
    weight_decay: float = attrs.field(default=0.0, validator=non_negative(integer=False))
    #: Adam's moment decays (Kingma & Ba 2015): each in [0, 1).
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), validator=each(unit(high_open=True),
                                                                                   min_len=2, max_len=2))
    eps: float = attrs.field(default=1e-8, validator=positive(integer=False))
    grad_clip: float = attrs.field(default=1.0, validator=positive(integer=False))
    warmup_steps: int = attrs.field(default=0, validator=non_negative())
    schedule: Literal["constant", "cosine"] = "constant"
    grad_accumulation: int = attrs.field(default=1, validator=positive())
    ema_decay: tuple[float, ...] = attrs.field(default=(0.999,), validator=each(unit(high_open=True)))
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = attrs.field(default=0, validator=non_negative())
    log_every: int = attrs.field(default=50, validator=positive())
    checkpoint_every: int = attrs.field(default=0, validator=non_negative())
    #: Checkpoints kept (the newest); 0 keeps every one.
    keep_last: int = attrs.field(default=2, validator=non_negative())
    sample_every: int = attrs.field(default=0, validator=non_negative())
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    compile_tuning: bool = False
    activation_checkpointing: bool = False
    fsdp_mixed_precision: bool = False
    max_nonfinite_steps: int = attrs.field(default=10, validator=positive())
    max_minutes: float = attrs.field(default=0.0, validator=non_negative(integer=False))
    dist_timeout_minutes: float = attrs.field(default=0.0, validator=non_negative(integer=False))


@attrs.frozen(kw_only=True)
class SampleConfig:
    """Sampling settings of a run. ``steps`` and ``num``: the defaults of ``genflow sample`` (images;
    points draw ``genflow.commands.sample.DEFAULT_NUM_POINTS``) and the training-time sample grids;
    ``guidance`` and ``seed``: the defaults of ``genflow sample`` and ``genflow eval`` (``eval``
    sweeps its own step counts and sample sizes, ``genflow.eval.cli``: metrics need more samples
    than a grid shows)."""

    steps: tuple[int, ...] = attrs.field(default=(1, 2, 4, 8), validator=each(positive()))
    num: int = attrs.field(default=64, validator=positive())
    #: The classifier-free guidance scale (1 = off, 0 = unconditional; arXiv 2509.04394 uses w >= 1).
    guidance: float = attrs.field(default=1.0, validator=finite())
    seed: int = attrs.field(default=0, validator=non_negative())


@attrs.frozen(kw_only=True)
class RunConfig:
    """A whole run: components, trainer and sampling settings."""

    data: Selection
    path: Selection
    objective: Selection
    #: None when the objective needs no time derivative and the config names none (flow matching).
    derivative: Selection | None = None
    backbone: Selection
    sampler: Selection
    #: Used only when the data is caption-conditioned (``DataSpec.text``); ignored otherwise.
    text_encoder: Selection
    train: TrainConfig = TrainConfig()
    sample: SampleConfig = SampleConfig()

    def selection(self, slot: str) -> Selection:
        """The chosen component of ``slot``; a ``ConfigError`` for an optional slot left empty."""
        selection = getattr(self, slot)
        if selection is None:
            raise ConfigError(f"{slot}: no component chosen; set [{slot}] name = ... or --{slot} NAME")
        return selection

    def chosen(self, slot: str) -> Selection | None:
        """The chosen component of ``slot``, None for an optional slot left empty."""
        return getattr(self, slot)


#: Plain (non-slot) sections of the run config.
SECTIONS: dict[str, type] = {"train": TrainConfig, "sample": SampleConfig}
