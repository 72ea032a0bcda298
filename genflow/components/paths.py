"""The linear (optimal-transport) path ``x_t = (1 - t) x + t z`` (docs/math.md section 1), the core's default
path, registered by genflow's built-in plugin as ``linear``."""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.interfaces import ProbabilityPath


class LinearPath(ProbabilityPath):
    """``alpha_t = 1 - t``, ``sigma_t = t``; transition ``x_r = x_t - (t - r) F`` (docs/math.md section 2)."""

    t_max = 1.0

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - t

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def d_alpha(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def transition_coefficients(self, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # A = 1, B = -(t - r), dB/dt = -1
        return torch.ones_like(t), -(t - r), -torch.ones_like(t)
