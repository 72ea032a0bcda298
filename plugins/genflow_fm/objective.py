"""The flow-matching objective: regress ``F(x_t, t, t)`` onto the conditional velocity ``v_t``."""

from __future__ import annotations

import attrs
import torch

from genflow.config.domains import finite, non_negative, positive, unit
from genflow.guidance import drop_labels
from genflow.interfaces import Backbone, Batch, DataSpec, Objective, ObjectiveOutput, ProbabilityPath
from genflow.losses import finite_mean
from genflow.timesteps import logit_normal, resolution_shift, shift_factor


@attrs.frozen(kw_only=True)
class FlowMatchingConfig:
    """``t ~ logit-normal(p_mean, p_std)``; ``label_dropout`` of labels become the null class."""

    p_mean: float = attrs.field(default=0.0, validator=finite())
    p_std: float = attrs.field(default=1.0, validator=positive(integer=False))
    label_dropout: float = attrs.field(default=0.1, validator=unit())
    base_resolution: int = attrs.field(default=0, validator=non_negative())


class FlowMatching(Objective):
    """``L = || F_theta(x_t, t, t) - v_t ||^2`` with ``x_t = alpha_t x + sigma_t z``."""

    def __init__(self, config: FlowMatchingConfig, *, path: ProbabilityPath, spec: DataSpec) -> None:
        self.config = config
        self.path = path
        self.spec = spec
        self.shift = shift_factor(spec.shape, config.base_resolution)

    def loss(self, backbone: Backbone, batch: Batch, *, generator: torch.Generator) -> ObjectiveOutput:
        x = batch.x
        n = x.shape[0]
        t = logit_normal(n, self.config.p_mean, self.config.p_std, generator=generator, device=x.device)
        t = resolution_shift(t, self.shift) * self.path.t_max
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_t = self.path.interpolate(x, z, t)
        v_t = self.path.velocity(x, z, t)
        cond = drop_labels(batch.cond, self.config.label_dropout, self.spec, generator)
        F = backbone(x_t, t, t, cond)
        per_sample = (F.float() - v_t.float()).pow(2).flatten(1).mean(1)
        loss, finite = finite_mean(per_sample)
        return ObjectiveOutput(
            loss=loss,
            per_sample=per_sample.detach(),
            logs={"mse": loss.detach(), "nonfinite": (~finite).sum().float()},
        )
