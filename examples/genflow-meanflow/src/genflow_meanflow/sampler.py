"""The ``meanflow`` sampler: ``x_r = x_t - (t - r) u(x_t, r, t)`` on a uniform grid (Geng et al. 2025).

The step is the definition of the average velocity rearranged (``(t - r) u = integral_r^t v``), so it
is exact for an exact ``u`` on any path; one step is ``x_0 = x_1 - u(x_1, 0, 1)``. On genflow's
linear path it coincides with TiM's ``transition`` sampler; on other paths (``trigflow``) it differs,
which is why MeanFlow ships its own sampler.
"""

from __future__ import annotations

import itertools

import torch
from genflow.guidance import guided_velocity
from genflow.interfaces import Backbone, Condition, DataSpec, ProbabilityPath, Sampler
from genflow.registry import EmptyConfig
from genflow.timesteps import time_grid
from torch import Tensor


class MeanFlowSampler(Sampler):
    """``steps`` average-velocity jumps from ``t_max`` to 0; pure (all state lives in the arguments).

    The running state stays in at least fp32; the network sees ``x_t`` in the noise's dtype. Guidance
    ``u = u_u + w (u_c - u_u)`` runs both branches as one ``2N`` batch (the paper instead trains
    guidance into the model and samples with ``guidance = 1``).
    """

    def __init__(self, *, path: ProbabilityPath, spec: DataSpec) -> None:
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
        grid = time_grid(steps, t_max=self.path.t_max).tolist()
        x_t = noise.to(torch.promote_types(noise.dtype, torch.float32))
        for t, r in itertools.pairwise(grid):
            u = self.average_velocity(backbone, x_t.to(noise.dtype), t, r, cond, guidance)
            x_t = x_t - (t - r) * u.to(x_t.dtype)  # x_r = x_t - (t - r) u(x_t, r, t)
        return x_t.to(noise.dtype)

    def average_velocity(
        self, backbone: Backbone, x_t: Tensor, t: float, r: float, cond: Condition, guidance: float
    ) -> Tensor:
        """``u(x_t, r, t) = backbone(x_t, t, r, cond)``, guided by ``genflow.guidance.guided_velocity``."""
        n, time_dtype = x_t.shape[0], torch.promote_types(x_t.dtype, torch.float32)
        t_n = torch.full((n,), t, dtype=time_dtype, device=x_t.device)
        r_n = torch.full((n,), r, dtype=time_dtype, device=x_t.device)
        return guided_velocity(backbone, x_t, t_n, r_n, cond, self.spec, guidance)


def build(config: EmptyConfig, *, path: ProbabilityPath, spec: DataSpec) -> MeanFlowSampler:
    """Registry factory of the ``meanflow`` sampler (no options)."""
    return MeanFlowSampler(path=path, spec=spec)
