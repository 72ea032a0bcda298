"""The stable Frechet distance and k-NN precision / recall."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genflow.eval.frechet import GaussianStats, feature_stats, frechet_distance, frechet_from_features, psd_sqrt
from genflow.eval.prdc import knn_radii, precision_recall


def _random_spd(d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, rank or d, generator=g, dtype=torch.float64)
    return a @ a.T / (rank or d)


def test_identical_sets_are_at_distance_zero():
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_from_features(f, f) == pytest.approx(0.0, abs=1e-9)


def test_diagonal_covariances_have_the_closed_form():
    # d^2 = |mu_1 - mu_2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 for diagonal S_1 = diag(a), S_2 = diag(b).
    a, b = torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64), torch.tensor([9.0, 1.0, 1.0], dtype=torch.float64)
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    expected = float((mu1 - mu2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum())
    value = frechet_distance(GaussianStats(mean=mu1, cov=a.diag(), count=2), GaussianStats(mean=mu2, cov=b.diag(), count=2))
    assert value == pytest.approx(expected, rel=1e-12)


def test_full_covariances_match_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _random_spd(8, 1), _random_spd(8, 2)
    mu1, mu2 = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    root = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * np.trace(root))
    value = frechet_distance(GaussianStats(mean=mu1, cov=s1, count=9), GaussianStats(mean=mu2, cov=s2, count=9))
    assert value == pytest.approx(expected, rel=1e-9)


def test_singular_covariances_stay_finite_and_non_negative():
    # Fewer samples than features and a rank-1 covariance: no NaN from the matrix square root.
    few = torch.randn(5, 64, generator=torch.Generator().manual_seed(3))
    others = torch.randn(7, 64, generator=torch.Generator().manual_seed(4))
    value = frechet_from_features(few, others)
    assert math.isfinite(value) and value >= 0
    s = _random_spd(32, 5, rank=1)
    value = frechet_distance(GaussianStats(mean=torch.zeros(32, dtype=torch.float64), cov=s, count=2),
                             GaussianStats(mean=torch.zeros(32, dtype=torch.float64), cov=s, count=2))
    assert value == pytest.approx(0.0, abs=1e-9)


def test_psd_sqrt_squares_back():
    s = _random_spd(6, 6)
    root = psd_sqrt(s)
    torch.testing.assert_close(root @ root, s)


def test_feature_stats_is_the_unbiased_covariance():
    f = torch.randn(100, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(feature_stats(f).cov, torch.cov(f.T))


def test_precision_recall_of_identical_disjoint_and_half_covered_sets():
    g = torch.Generator().manual_seed(8)
    real = torch.cat([torch.randn(200, 2, generator=g) * 0.1 + c for c in (torch.tensor([0.0, 0.0]),
                                                                         torch.tensor([10.0, 0.0]))])
    assert precision_recall(real, real) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    half = torch.randn(400, 2, generator=g) * 0.1  # every sample on one of the two modes
    precision, recall = precision_recall(real, half)
    assert precision > 0.9 and 0.4 < recall < 0.6


def test_knn_radii_skip_the_point_itself():
    points = torch.tensor([[0.0], [1.0], [3.0]])
    torch.testing.assert_close(knn_radii(points, 1), torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
