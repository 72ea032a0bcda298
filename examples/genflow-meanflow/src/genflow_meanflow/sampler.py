"""The ``meanflow`` sampler: ``x_r = x_t - (t - r) u(x_t, r, t)`` on a uniform grid (Geng et al. 2025).

The step is the definition of the average velocity rearranged (``(t - r) u = integral_r^t v``), so it
is exact for an exact ``u`` on any path; one step is ``x_0 = x_1 - u(x_1, 0, 1)``. On genflow's
linear path it coincides with TiM's ``transition`` sampler; on other paths (``trigflow``) it differs,
which is why MeanFlow ships its own sampler.
"""

from __future__ import annotations

import itertools

import torch
from genflow.guidance import guidance_active, guided_forward, null_condition
from genflow.interfaces import Backbone, Condition, DataSpec, Path, Sampler
from genflow.registry import EmptyConfig
from torch import Tensor


def time_grid(steps: int, t_max: float) -> Tensor:
    """``t_0 = t_max > t_1 > ... > t_N = 0``, uniform, in float64."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(t_max, 0.0, steps + 1, dtype=torch.float64)


class MeanFlowSampler(Sampler):
    """``steps`` average-velocity jumps from ``t_max`` to 0; pure (all state lives in the arguments).

    The running state stays in at least fp32; the network sees ``x_t`` in the noise's dtype. Guidance
    ``u = u_u + w (u_c - u_u)`` runs both branches as one ``2N`` batch (the paper instead trains
    guidance into the model and samples with ``guidance = 1``).
    """

    def __init__(self, *, path: Path, spec: DataSpec) -> None:
        self.path = path
        self.spec = spec

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
        grid = time_grid(steps, self.path.t_max).tolist()
        x_t = noise.to(torch.promote_types(noise.dtype, torch.float32))
        for t, r in itertools.pairwise(grid):
            u = self.average_velocity(backbone, x_t.to(noise.dtype), t, r, cond, guidance)
            x_t = x_t - (t - r) * u.to(x_t.dtype)  # x_r = x_t - (t - r) u(x_t, r, t)
        return x_t.to(noise.dtype)

    def average_velocity(
        self, backbone: Backbone, x_t: Tensor, t: float, r: float, cond: Condition, guidance: float
    ) -> Tensor:
        """``u(x_t, r, t) = backbone(x_t, t, r, cond)``, guided when ``guidance != 1`` and labels exist."""
        n, time_dtype = x_t.shape[0], torch.promote_types(x_t.dtype, torch.float32)
        t_n = torch.full((n,), t, dtype=time_dtype, device=x_t.device)
        r_n = torch.full((n,), r, dtype=time_dtype, device=x_t.device)
        if not guidance_active(cond, guidance) or self.spec.num_classes <= 0:
            return backbone(x_t, t_n, r_n, cond)
        return guided_forward(backbone, x_t, t_n, r_n, cond, null_condition(cond, self.spec), guidance)


def build(config: EmptyConfig, *, path: Path, spec: DataSpec) -> MeanFlowSampler:
    """Registry factory of the ``meanflow`` sampler (no options)."""
    return MeanFlowSampler(path=path, spec=spec)
