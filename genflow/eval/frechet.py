"""Frechet distance between Gaussians fitted to two feature sets, computed stably in float64.

``d^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^{1/2})`` (Dowson & Landau 1982; the
FID of Heusel et al. 2017). ``S_1 S_2`` is not symmetric, and ``scipy.linalg.sqrtm`` of it can turn
complex or NaN for nearly singular covariances. Instead, with ``A = S_1^{1/2}`` (symmetric PSD),
``S_1 S_2 = A (A S_2 A) A^{-1}`` is similar to the symmetric PSD matrix ``M = A S_2 A``, so
``tr((S_1 S_2)^{1/2}) = tr(M^{1/2}) = sum_i sqrt(lambda_i(M))``: two symmetric eigen-decompositions,
with round-off negatives clamped to zero. The result is finite for any finite input.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from genflow.eval.threads import one_thread


@attrs.frozen(kw_only=True)
class GaussianStats:
    """Mean ``(D,)`` and covariance ``(D, D)`` of a feature set, float64."""

    mean: Tensor
    cov: Tensor
    count: int


def feature_stats(features: Tensor) -> GaussianStats:
    """Mean and unbiased covariance of ``(N, D)`` features (``N >= 2``)."""
    f = features.detach().double().cpu()
    if f.shape[0] < 2:
        raise ValueError("feature_stats needs at least 2 samples")
    mean = f.mean(0)
    centred = f - mean
    cov = centred.T @ centred / (f.shape[0] - 1)
    return GaussianStats(mean=mean, cov=cov, count=f.shape[0])


def psd_sqrt(matrix: Tensor) -> Tensor:
    """Square root of a symmetric PSD matrix by eigen-decomposition; negative round-off clamped."""
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = torch.linalg.eigh(sym)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def trace_sqrt_product(cov_1: Tensor, cov_2: Tensor) -> Tensor:
    """``tr((S_1 S_2)^{1/2}) = sum sqrt(eig(S_1^{1/2} S_2 S_1^{1/2}))`` (see the module docstring)."""
    root = psd_sqrt(cov_1)
    middle = root @ cov_2 @ root
    values = torch.linalg.eigvalsh(0.5 * (middle + middle.T))
    return values.clamp_min(0).sqrt().sum()


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Squared Frechet distance ``d^2`` between two fitted Gaussians (the usual "FID" value), >= 0.

    Runs on one thread: multi-threaded LAPACK is many times slower on a busy CPU, and a 2048-D
    decomposition takes seconds on one core.
    """
    diff = a.mean - b.mean
    with one_thread():
        value = diff @ diff + a.cov.trace() + b.cov.trace() - 2 * trace_sqrt_product(a.cov, b.cov)
    return max(float(value), 0.0)


def frechet_from_features(a: Tensor, b: Tensor) -> float:
    """``frechet_distance`` of two ``(N, D)`` feature sets."""
    return frechet_distance(feature_stats(a), feature_stats(b))
