"""The run config: one slot per extension point plus the trainer's and sampler's own settings."""

from __future__ import annotations

from typing import Any, Literal

import attrs

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
SLOT_DEFAULTS: dict[str, str] = {
    "data": "toy2d",
    "path": "linear",
    "objective": "tim",
    "derivative": "dde",
    "backbone": "mlp",
    "sampler": "euler",
    "text_encoder": "transformer",
}


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
    ``coordinate_descent_tuning``): about a minute more compilation for XL/2, and steps 2-4% faster
    on an H200 (docs/performance.md); worth it for long runs.

    ``dist_timeout_minutes`` bounds how long a rank waits for the others (joining, each
    collective) before it fails; 0 is 2 minutes on CPU and 10 on GPUs (docs/runs.md).
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    grad_accumulation: int = 1
    ema_decay: tuple[float, ...] = (0.999,)
    precision: Literal["fp32", "bf16"] = "fp32"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 0
    keep_last: int = 2
    sample_every: int = 0
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune-no-cudagraphs"] = "default"
    compile_tuning: bool = False
    activation_checkpointing: bool = False
    fsdp_mixed_precision: bool = False
    max_nonfinite_steps: int = 10
    max_minutes: float = 0.0
    dist_timeout_minutes: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))


@attrs.frozen(kw_only=True)
class SampleConfig:
    """Defaults of ``genflow sample`` / ``genflow eval`` and of the training-time sample grids."""

    steps: tuple[int, ...] = (1, 2, 4, 8)
    num: int = 64
    guidance: float = 1.0
    seed: int = 0


@attrs.frozen(kw_only=True)
class RunConfig:
    """A whole run: components, trainer and sampling settings."""

    data: Selection
    path: Selection
    objective: Selection
    derivative: Selection
    backbone: Selection
    sampler: Selection
    #: Used only when the data is caption-conditioned (``DataSpec.text``); ignored otherwise.
    text_encoder: Selection
    train: TrainConfig = TrainConfig()
    sample: SampleConfig = SampleConfig()

    def selection(self, slot: str) -> Selection:
        return getattr(self, slot)


#: Plain (non-slot) sections of the run config.
SECTIONS: dict[str, type] = {"train": TrainConfig, "sample": SampleConfig}
