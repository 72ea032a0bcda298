"""Distances between sample sets."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sliced_wasserstein(a: Tensor, b: Tensor, *, projections: int = 512, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two equally sized sets ``(N, D)``.

    ``sqrt(mean over random unit directions of W2^2 of the 1-D projections)``; the 1-D W2 between
    empirical measures of equal size is the distance between sorted projections.
    """
    if a.shape != b.shape:
        n = min(a.shape[0], b.shape[0])
        a, b = a[:n], b[:n]
    a, b = a.flatten(1).double().cpu(), b.flatten(1).double().cpu()
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], projections, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=0, keepdim=True)
    # (projections, N) rows sorted with numpy: several times faster than torch's CPU sort here.
    pa = np.sort((directions.T @ a.T).numpy(), axis=1)
    pb = np.sort((directions.T @ b.T).numpy(), axis=1)
    return float(np.sqrt(np.mean((pa - pb) ** 2)))
