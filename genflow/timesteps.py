"""Time distributions, the resolution shift and the sampling time grid shared by objectives and samplers
(docs/math.md sections 5 and 7)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def logit_normal(n: int, mean: float, std: float, *, generator: torch.Generator, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """``t = sigmoid(m)``, ``m ~ N(mean, std^2)`` (docs/math.md section 5, step 1); shape ``(n,)``."""
    m = torch.randn(n, generator=generator, device=device, dtype=dtype) * std + mean
    return torch.sigmoid(m)


def shift_factor(sample_shape: tuple[int, ...], base_resolution: int) -> float:
    """``s = sqrt(n_tokens / n_base)`` (docs/math.md section 5, step 4) for an image ``(C, H, W)``.

    The token count ratio does not depend on the patch size: ``H W / base^2``. Returns 1 (no
    shift) when ``base_resolution`` is 0 or the data is not an image.
    """
    if base_resolution <= 0 or len(sample_shape) != 3:
        return 1.0
    return math.sqrt(sample_shape[1] * sample_shape[2] / base_resolution**2)


def resolution_shift(t: Tensor, s: float) -> Tensor:
    """``t -> s t / (1 + (s - 1) t)``: maps [0, 1] onto itself, towards noise when ``s > 1``."""
    if s == 1.0:
        return t
    return s * t / (1 + (s - 1) * t)


def time_grid(steps: int, *, shift: float = 1.0, t_max: float = 1.0, device: torch.device | str = "cpu") -> Tensor:
    """``t_0 = t_max > t_1 > ... > t_N = 0``, ``(steps + 1,)`` in float64: uniform, then the resolution
    shift (docs/math.md section 7). Every sampler steps along this grid."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
    return resolution_shift(u, shift) * t_max
