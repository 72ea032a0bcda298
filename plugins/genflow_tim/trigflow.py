"""The TrigFlow path ``x_t = cos(t) x + sin(t) z``, ``t`` in ``[0, pi/2]`` (docs/math.md sections 1-2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genflow.interfaces import ProbabilityPath


class TrigFlowPath(ProbabilityPath):
    """``alpha_t = cos t``, ``sigma_t = sin t``; transition ``x_r = cos(t - r) x_t - sin(t - r) F``.

    With ``F`` the velocity parameterisation ``F = -sin(t) x + cos(t) z``, the transition is exact on
    every conditional trajectory: ``cos(t - r) x_t - sin(t - r) v_t = cos(r) x + sin(r) z = x_r``.
    Hence ``A = cos(t - r)``, ``B = -sin(t - r)`` and ``dB/dt = -cos(t - r)`` (at fixed ``r``).
    """

    t_max = math.pi / 2

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(t)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sin(t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return -torch.sin(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.cos(t)

    def transition_coefficients(self, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # docs/math.md section 2: A = cos(t - r), B = -sin(t - r), dB/dt = -cos(t - r)
        dt = t - r
        return torch.cos(dt), -torch.sin(dt), -torch.cos(dt)


def build(config: object) -> TrigFlowPath:
    """Registry factory of the ``trigflow`` path (no options)."""
    return TrigFlowPath()
