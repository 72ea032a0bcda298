"""Improved precision and recall (Kynkaanniemi et al. 2019) by k-NN manifold estimates.

The manifold of a feature set ``Phi`` is the union of balls ``B(phi, r_k(phi))``, ``r_k`` the
distance from ``phi`` to its k-th nearest neighbour in ``Phi`` (itself excluded). Then

    precision = (1/|F|) sum_{f in F} [f lies in manifold(R)]     (fakes that look real)
    recall    = (1/|R|) sum_{r in R} [r lies in manifold(F)]     (reals the model covers)

with ``R`` real and ``F`` generated features (eq. 1-2 of the paper; k = 3 by default).
"""

from __future__ import annotations

import torch
from torch import Tensor

_CHUNK = 2048


def knn_radii(features: Tensor, k: int) -> Tensor:
    """``(N,)`` distance from each row to its k-th nearest other row (float64)."""
    f = features.double()
    if f.shape[0] <= k:
        raise ValueError(f"k-NN radii need more than k = {k} points, got {f.shape[0]}")
    radii = []
    for start in range(0, f.shape[0], _CHUNK):
        d = torch.cdist(f[start:start + _CHUNK], f)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself (distance 0)
    return torch.cat(radii)


def coverage_fraction(points: Tensor, centres: Tensor, radii: Tensor) -> float:
    """Fraction of ``points`` inside at least one ball ``B(centres_j, radii_j)``."""
    p, c = points.double(), centres.double()
    inside = []
    for start in range(0, p.shape[0], _CHUNK):
        d = torch.cdist(p[start:start + _CHUNK], c)
        inside.append((d <= radii[None]).any(dim=1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3) -> tuple[float, float]:
    """``(precision, recall)`` of ``fake`` against ``real`` features, each in [0, 1]."""
    precision = coverage_fraction(fake, real, knn_radii(real, k))
    recall = coverage_fraction(real, fake, knn_radii(fake, k))
    return precision, recall
