"""ODE samplers for the probability-flow ODE ``dx/dt = F(x_t, t, t)``: Euler and Heun."""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from genflow.config.domains import non_negative
from genflow.guidance import guidance_active, guided_forward, null_condition
from genflow.interfaces import Backbone, Condition, DataSpec, Path, Sampler
from genflow.timesteps import resolution_shift, shift_factor


@attrs.frozen(kw_only=True)
class ODESamplerConfig:
    """``base_resolution`` > 0 applies the resolution-dependent shift to the time grid (genflow.timesteps.resolution_shift)."""

    base_resolution: int = attrs.field(default=0, validator=non_negative())


def time_grid(steps: int, t_max: float, shift: float, device: torch.device) -> Tensor:
    """``t_0 = t_max > t_1 > ... > t_N = 0`` in float64: uniform, then the resolution shift."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
    return resolution_shift(t, shift) * t_max


class ODESampler(Sampler):
    """Integrates ``dx/dt = u(x_t, t)`` from ``t_max`` to 0 with ``steps`` steps."""

    heun: bool = False

    def __init__(self, config: ODESamplerConfig, *, path: Path, spec: DataSpec) -> None:
        self.config = config
        self.path = path
        self.spec = spec

    def _velocity(self, backbone: Backbone, x: Tensor, t: Tensor, cond: Condition, guidance: float) -> Tensor:
        t_batch = t.to(x.dtype).expand(x.shape[0])
        if guidance_active(cond, guidance):
            null = null_condition(cond, self.spec)
            return guided_forward(backbone, x, t_batch, t_batch, cond, null, guidance)
        return backbone(x, t_batch, t_batch, cond)

    @torch.no_grad()
    def sample(self, backbone: Backbone, noise: Tensor, cond: Condition, *, steps: int, guidance: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        shift = shift_factor(tuple(noise.shape[1:]), self.config.base_resolution)
        grid = time_grid(steps, self.path.t_max, shift, noise.device)
        x = noise
        for i in range(steps):
            t, r = grid[i], grid[i + 1]
            u = self._velocity(backbone, x, t, cond, guidance)
            dt = (r - t).to(x.dtype)
            x_next = x + dt * u
            if self.heun and i < steps - 1:  # second-order correction; the last step stays Euler
                u_next = self._velocity(backbone, x_next, r, cond, guidance)
                x_next = x + dt * 0.5 * (u + u_next)
            x = x_next
        return x


class EulerSampler(ODESampler):
    """First order: one network evaluation per step."""


class HeunSampler(ODESampler):
    """Second order (trapezoidal corrector): two evaluations per step, one on the last step."""

    heun = True
