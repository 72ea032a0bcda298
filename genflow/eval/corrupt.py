"""Image corruptions: Gaussian noise and Gaussian blur of pixels in [-1, 1], ``(N, C, H, W)``.

Used to augment the shapes classifier's training (so it judges shapes and colours, not pixel
noise) and to validate that Frechet distances grow with corruption.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional


def add_noise(x: Tensor, std: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``clamp(x + std * n, -1, 1)`` with ``n ~ N(0, I)``; ``std`` a number or per-image ``(N,)``."""
    std = torch.as_tensor(std, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return (x + std * noise.to(x.device)).clamp(-1, 1)


def gaussian_kernel(sigma: float, max_radius: int | None = None) -> Tensor:
    """Normalised 1-D Gaussian kernel of radius ``ceil(3 sigma)`` (at most ``max_radius``)."""
    radius = max(1, math.ceil(3 * sigma))
    if max_radius is not None:
        radius = max(1, min(radius, max_radius))
    k = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    return k / k.sum()


def blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflected borders; ``sigma`` in pixels (0 = unchanged)."""
    if sigma <= 0:
        return x
    k = gaussian_kernel(sigma, max_radius=min(x.shape[-2:]) - 1).to(x)
    channels, radius = x.shape[1], (k.numel() - 1) // 2
    y = functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = functional.conv2d(y, k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return functional.conv2d(y, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
