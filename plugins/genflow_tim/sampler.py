"""The ``transition`` sampler: N transitions ``x_r = A_{t,r} x_t + B_{t,r} F(x_t, t, r)`` (docs/math.md s7)."""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor

from genflow.config.domains import each, non_negative, unit
from genflow.guidance import guidance_active, guided_velocity
from genflow.interfaces import Backbone, Condition, DataSpec, ProbabilityPath, Sampler
from genflow.timesteps import shift_factor, time_grid

#: A closed sub-interval ``[lo, hi]`` of ``[0, 1]`` (times as a fraction of ``t_max``).
INTERVAL = each(unit(), min_len=2, max_len=2, ordered=True)


@attrs.frozen(kw_only=True)
class TransitionSamplerConfig:
    """Options of the ``transition`` sampler.

    ``guidance_interval``: classifier-free guidance runs where ``t / t_max`` lies in this CLOSED
    interval. The default ``(0, 1)`` includes ``t = 1``, so 1-step sampling is guided; a half-open
    interval that excludes ``t = 1`` would make 1-step sampling unguided.
    ``stochasticity``: ``s`` of the stochastic term (0 = deterministic), never applied on the
    first or last step. ``base_resolution`` > 0 applies the resolution shift to the time grid.
    """

    guidance_interval: tuple[float, float] = attrs.field(default=(0.0, 1.0), validator=INTERVAL)
    stochasticity: float = attrs.field(default=0.0, validator=non_negative(integer=False))
    base_resolution: int = attrs.field(default=0, validator=non_negative())


class TransitionSampler(Sampler):
    """Deterministic (or, with ``stochasticity``, stochastic) transition sampling, docs/math.md s7.

    Pure: all state lives in the arguments. The time grid stays in float64 and the running state
    ``x_t`` in at least fp32; the network sees ``x_t`` in the noise's dtype and times in at least
    fp32. Guidance ``F = F_u + w (F_c - F_u)`` evaluates both branches as one ``2N`` batch; it is
    skipped when ``guidance == 1`` or the condition has neither labels nor a caption.
    """

    def __init__(self, config: TransitionSamplerConfig, *, path: ProbabilityPath, spec: DataSpec) -> None:
        self.config = config
        self.path = path
        self.spec = spec
        self.shift = shift_factor(spec.shape, config.base_resolution)

    @torch.no_grad()
    def sample(
        self,
        backbone: Backbone,
        noise: Tensor,
        cond: Condition,
        *,
        steps: int,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        grid = time_grid(steps, shift=self.shift, t_max=self.path.t_max, device=noise.device)  # float64
        x_t = noise.to(torch.promote_types(noise.dtype, torch.float32))  # the state: at least fp32
        for i in range(steps):
            t, r = grid[i], grid[i + 1]
            F = self.transition_velocity(backbone, x_t.to(noise.dtype), t, r, cond, guidance).to(x_t.dtype)
            x_r = self.path.transition(x_t, F, t.reshape(1), r.reshape(1))  # (1,) times broadcast over rows
            if self.config.stochasticity > 0 and 0 < i < steps - 1:
                x_r = self.stochastic_term(x_t, x_r, F, t, r, generator)
            x_t = x_r
        return x_t.to(noise.dtype)

    def guided(self, t: Tensor, cond: Condition, guidance: float) -> bool:
        """Whether step ``t`` runs classifier-free guidance (closed interval on ``t / t_max``)."""
        if not guidance_active(cond, guidance):
            return False
        lo, hi = self.config.guidance_interval
        return lo <= float(t) / self.path.t_max <= hi

    def transition_velocity(
        self, backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition, guidance: float
    ) -> Tensor:
        """``F(x_t, t, r)``, guided as ``F_u + w (F_c - F_u)`` where ``guided`` says so (docs/math.md s7.1)."""
        n, time_dtype = x_t.shape[0], torch.promote_types(x_t.dtype, torch.float32)
        t_n = torch.full((n,), float(t), dtype=time_dtype, device=x_t.device)
        r_n = torch.full((n,), float(r), dtype=time_dtype, device=x_t.device)
        w = guidance if self.guided(t, cond, guidance) else 1.0  # outside the interval: unguided
        return guided_velocity(backbone, x_t, t_n, r_n, cond, self.spec, w).to(x_t.dtype)

    def stochastic_term(
        self, x_t: Tensor, x_r: Tensor, F: Tensor, t: Tensor, r: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """``x_r - s (t - r) z_hat + sqrt(2 s sigma_t (t - r)) xi`` (docs/math.md s7.3).

        ``z_hat`` is the noise implied by ``(x_t, F)`` with ``F`` read as the velocity:
        ``z_hat = (alpha' x_t - alpha F) / (alpha' sigma - alpha sigma')``, which is
        ``x_t + (1 - t) F`` on the linear path, where ``sigma_t = t`` recovers the formula of s7.
        """
        s, p = self.config.stochasticity, self.path
        alpha, sigma, d_alpha, d_sigma = (float(c(t)) for c in (p.alpha, p.sigma, p.d_alpha, p.d_sigma))
        z_hat = (d_alpha * x_t - alpha * F) / (d_alpha * sigma - alpha * d_sigma)
        device = generator.device if generator is not None else x_t.device
        xi = torch.randn(x_t.shape, generator=generator, device=device, dtype=x_t.dtype).to(x_t.device)
        h = float(t - r)
        return x_r - s * h * z_hat + math.sqrt(2 * s * sigma * h) * xi


def build(config: TransitionSamplerConfig, *, path: ProbabilityPath, spec: DataSpec) -> TransitionSampler:
    """Registry factory of the ``transition`` sampler."""
    return TransitionSampler(config, path=path, spec=spec)
