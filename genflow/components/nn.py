"""Small neural-network building blocks shared by backbones."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoid(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``[cos(t w_i), sin(t w_i)]``, ``w_i = max_period^(-i / (dim / 2))``; ``(N,)`` -> ``(N, dim)``.

    ``t`` is the raw time in ``[0, 1]`` (docs/math.md sections 4 and 9). Computed in at least float32 and
    in float64 when ``t`` is float64, so finite differences in float64 stay exact.
    """
    dtype = torch.promote_types(t.dtype, torch.float32)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * freqs[None]  # (N, dim / 2)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, dim)


class TimestepEmbedder(nn.Module):
    """``phi(t)``: sinusoid -> Linear -> SiLU -> Linear (docs/math.md section 9)."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def init_weights(self, std: float = 0.02) -> None:
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)

    def forward(self, t: Tensor) -> Tensor:
        weight = self.mlp[0].weight
        assert isinstance(weight, Tensor)
        freq = sinusoid(t, self.frequency_dim).to(weight.dtype)  # (N, 256)
        return self.mlp(freq)  # (N, dim)
