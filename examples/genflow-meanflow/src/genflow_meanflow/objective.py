"""The ``meanflow`` objective: regress the average velocity ``u(z_t, r, t)`` (Geng et al. 2025).

The average velocity over ``[r, t]`` of the flow ODE ``dz/dt = v(z_t, t)`` is (its definition in the paper)

    u(z_t, r, t) = 1 / (t - r) * integral_r^t v(z_tau, tau) dtau

Differentiating ``(t - r) u = integral_r^t v`` in ``t`` gives the MeanFlow identity

    u(z_t, r, t) = v(z_t, t) - (t - r) * d/dt u(z_t, r, t)

where ``d/dt`` is the total derivative along ``(dz_t/dt, dr/dt, dt/dt) = (v, 0, 1)``. Training
regresses ``u_theta`` onto ``u_tgt = v_t - (t - r) sg(du_theta/dt)``, the identity with the conditional
velocity ``v_t`` (the paper's training target; the quoted names below are paragraphs of
arXiv:2505.13447), with adaptive loss weighting. genflow's backbone is ``F(x_t, t, r, cond)`` with
``t >= r``, so ``u_theta(z_t, r, t)`` is ``backbone(x_t, t, r, cond)``; ``du/dt`` comes from whichever
``Derivative`` plugin the run selects (``dde``, ``jvp``, ...), through the derivative protocol
``Derivative.forward_and_derivative`` (rows, main-pass reuse, random-state replay).

Only genflow's public API is used (``genflow.api`` lists it): ``genflow.interfaces``,
``genflow.objectives`` and ``genflow.guidance``.
"""

from __future__ import annotations

import attrs
import torch
from attrs import validators
from genflow.errors import ConfigError
from genflow.guidance import drop_labels
from genflow.interfaces import (
    Backbone,
    Batch,
    Condition,
    DataSpec,
    Derivative,
    Objective,
    ObjectiveOutput,
    ProbabilityPath,
    expand_like,
)
from genflow.objectives import (
    adaptive_weight,
    interval_target,
    ordered_times,
    row_mean,
    rows_finite,
    split_rows,
)
from torch import Tensor

_unit = validators.and_(validators.ge(0.0), validators.le(1.0))


@attrs.frozen(kw_only=True)
class MeanFlowConfig:
    """Options of the ``meanflow`` objective; defaults are the paper's ImageNet settings.

    Times: ``t, r`` = max / min of two logit-normal draws ``sigmoid(N(p_mean, p_std))``; a fraction
    ``flow_ratio`` of each batch gets ``r = t`` (plain flow matching; the paper keeps 75%).
    Loss: ``sg(w) ||Delta||^2`` with ``w = 1 / (||Delta||^2 + adaptive_c)^adaptive_p`` (``p = 0`` is
    plain MSE, ``p = 1`` the paper's choice). ``||Delta||^2`` is the mean over the sample's entries,
    so ``adaptive_c`` does not depend on the data size. ``label_dropout``: probability of the null class.
    """

    p_mean: float = -0.4
    p_std: float = attrs.field(default=1.0, validator=validators.gt(0.0))
    flow_ratio: float = attrs.field(default=0.75, validator=_unit)
    adaptive_p: float = attrs.field(default=1.0, validator=validators.ge(0.0))
    adaptive_c: float = attrs.field(default=1e-3, validator=validators.gt(0.0))
    label_dropout: float = attrs.field(default=0.1, validator=_unit)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def sample_times(
    config: MeanFlowConfig, n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Unit times ``(t, r)``, each ``(n,)`` in ``(0, 1)`` with ``t >= r`` ("sampling time steps").

    Exactly ``round(n * flow_ratio)`` rows, chosen by a random permutation, get ``r = t``: a fixed
    count keeps the derivative's batch size constant from step to step.
    """
    t, r = ordered_times(n, config.p_mean, config.p_std, generator=generator, dtype=dtype)
    (flow_rows,) = split_rows(n, (config.flow_ratio,), generator=generator)
    r[flow_rows] = t[flow_rows]  # u(z_t, t, t) = v(z_t, t): flow matching on these rows
    return t, r


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------


class MeanFlow(Objective):
    """MeanFlow training: ``(t, r)`` sampling, noising, the average-velocity target with ``du/dt`` from a
    pluggable ``Derivative`` on the ``t != r`` rows, and the adaptively weighted loss.

    Non-finite rows are masked out of the loss and counted in ``logs["nonfinite"]``; when no row is
    finite the loss is NaN, so the trainer's non-finite guard skips the step.
    """

    def __init__(self, config: MeanFlowConfig, *, path: ProbabilityPath, derivative: Derivative,
                 spec: DataSpec) -> None:
        self.config = config
        self.path = path
        self.derivative = derivative
        self.spec = spec

    def check_backbone(self, backbone: Backbone, *, distributed: bool) -> None:
        """The derivative provider decides (e.g. ``jvp`` refuses backbones without forward-mode AD)."""
        self.derivative.check_backbone(backbone, distributed=distributed)

    def loss(self, backbone: Backbone, batch: Batch, *, generator: torch.Generator) -> ObjectiveOutput:
        x = batch.x
        t, r = self.times(x.shape[0], generator=generator, dtype=x.dtype)
        t, r = t.to(x.device), r.to(x.device)
        z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        cond = drop_labels(batch.cond, self.config.label_dropout, self.spec, generator)
        x_t, v_t = self.path.interpolate(x, z, t), self.path.velocity(x, z, t)  # z_t and dz_t/dt
        # u_theta(z_t, r, t) (N, ...) and sg(du/dt) on the t != r rows, as the provider needs them
        out = self.derivative.forward_and_derivative(backbone, x_t, t, r, v_t, cond, t_max=self.path.t_max)
        u_tgt = interval_target(v_t, out.dF_dt, t, r).detach()  # u_tgt = v_t - (t - r) sg(du/dt)
        return self.adaptive_loss(out.F, u_tgt)

    def times(self, n: int, *, generator: torch.Generator, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Times ``(t, r)`` on the path, ``(n,)`` each: unit times scaled to ``[0, t_max]``."""
        time_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        t, r = sample_times(self.config, n, generator=generator, dtype=time_dtype)
        return t * self.path.t_max, r * self.path.t_max

    def time_derivative(
        self, backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, v_t: Tensor, cond: Condition
    ) -> Tensor:
        """``sg(du/dt)`` along ``(v_t, 0, 1)`` on the ``t != r`` rows; zeros where ``r = t`` (not needed there)."""
        return self.derivative.on_rows(backbone, x_t, t, r, v_t, cond, t_max=self.path.t_max)

    def adaptive_loss(self, u: Tensor, u_tgt: Tensor) -> ObjectiveOutput:
        """``mean(sg(w) ||Delta||^2)`` over the finite rows, ``w = 1 / (||Delta||^2 + c)^p``.

        ("adaptive loss weighting"; ``p = 1`` is the paper's choice, ``p = 0.5`` a pseudo-Huber loss.)
        """
        u = u.to(torch.promote_types(u.dtype, torch.float32))
        u_tgt = u_tgt.to(u.dtype)
        finite = rows_finite(u.detach()) & rows_finite(u_tgt)
        keep = expand_like(finite, u).bool()
        # zero the bad rows *before* the loss: a NaN there would turn their zero gradient into NaN
        delta_sq = row_mean((torch.where(keep, u, 0.0) - torch.where(keep, u_tgt, 0.0)).square())
        weight = adaptive_weight(delta_sq, eps=self.config.adaptive_c, power=self.config.adaptive_p) * finite
        count = finite.sum()
        loss = (weight * delta_sq).sum() / count  # 0 / 0 = NaN when no row is finite
        raw = row_mean((u.detach() - u_tgt).square())
        logs = {"mse": (delta_sq.detach() * finite).sum() / count, "nonfinite": (~finite).sum().to(torch.float32)}
        return ObjectiveOutput(loss=loss, per_sample=raw, logs=logs)


def build(config: MeanFlowConfig, *, path: ProbabilityPath, derivative: Derivative | None,
          spec: DataSpec) -> MeanFlow:
    """Registry factory of the ``meanflow`` objective (``genflow.hookspecs``: objective kind)."""
    if derivative is None:
        raise ConfigError("objective 'meanflow' needs a derivative provider: "
                          "set [derivative] name = \"dde\" (or \"jvp\")")
    return MeanFlow(config, path=path, derivative=derivative, spec=spec)
