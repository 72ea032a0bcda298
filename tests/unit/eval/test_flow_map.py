"""The exact flow map of Gaussian mixtures (docs/math.md section 8) against closed forms and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from genflow_tim.trigflow import TrigFlowPath

from genflow.components.paths import LinearPath
from genflow.data.toy2d import GaussianMixture, Toy2D, Toy2DConfig
from genflow.eval.flow_map import flow_map, mixture_velocity


def _variance(t: float, s: float) -> float:
    return (1 - t) ** 2 * s**2 + t**2  # V(t) of docs/math.md section 8


def test_single_gaussian_velocity_matches_the_oracle():
    s, t = 0.3, 0.4
    mixture = GaussianMixture(means=torch.zeros(1, 2, dtype=torch.float64), std=s)
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = (t - (1 - t) * s**2) / _variance(t, s) * x  # u = V'(t) / (2 V(t)) x_t
    torch.testing.assert_close(mixture_velocity(mixture, LinearPath(), x, torch.tensor(t)), expected)


@pytest.mark.parametrize(("t", "r"), [(1.0, 0.0), (0.8, 0.3)])
def test_single_gaussian_flow_map_is_the_closed_form(t, r):
    s = 0.5
    mixture = GaussianMixture(means=torch.zeros(1, 2, dtype=torch.float64), std=s)
    x = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = flow_map(mixture, LinearPath(), x, steps=200, t_start=t, t_end=r)
    torch.testing.assert_close(out, math.sqrt(_variance(r, s) / _variance(t, s)) * x, rtol=1e-9, atol=1e-9)


def _numpy_velocity(means: np.ndarray, s: float, coefficients, t: float, x: np.ndarray) -> np.ndarray:
    """An independent numpy transcription of u = alpha' E[x | x_t] + sigma' E[z | x_t]."""
    alpha, sigma, d_alpha, d_sigma = coefficients(t)
    x = x.reshape(-1, 1, 2)
    variance = alpha**2 * s**2 + sigma**2
    residual = x - alpha * means[None]
    logits = -(residual**2).sum(-1) / (2 * variance)
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    e_x = means[None] + alpha * s**2 / variance * residual
    e_z = sigma / variance * residual
    return (w[..., None] * (d_alpha * e_x + d_sigma * e_z)).sum(1).ravel()


PATHS = {
    "linear": (LinearPath(), lambda t: (1 - t, t, -1.0, 1.0)),
    "trigflow": (TrigFlowPath(), lambda t: (math.cos(t), math.sin(t), -math.sin(t), math.cos(t))),
}


@pytest.mark.parametrize("name", PATHS)
def test_mixture_flow_map_matches_scipy(name):
    solve_ivp = pytest.importorskip("scipy.integrate").solve_ivp
    path, coefficients = PATHS[name]
    mixture = Toy2D(Toy2DConfig(kind="gaussians8")).mixture()
    z = torch.randn(12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    means = mixture.means.numpy()

    def velocity(t: float, x: np.ndarray) -> np.ndarray:
        return _numpy_velocity(means, mixture.std, coefficients, t, x)

    reference = solve_ivp(velocity, (path.t_max, 0.0), z.numpy().ravel(), method="DOP853", rtol=1e-11, atol=1e-12)
    ours = flow_map(mixture, path, z, steps=500)
    np.testing.assert_allclose(ours.numpy(), reference.y[:, -1].reshape(-1, 2), atol=1e-7)


def test_paths_with_the_same_signal_to_noise_share_the_flow_map():
    # Linear and TrigFlow paths differ by a time change and a scale, so noise -> data agrees.
    mixture = Toy2D(Toy2DConfig()).mixture()
    z = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(flow_map(mixture, LinearPath(), z, steps=300),
                               flow_map(mixture, TrigFlowPath(), z, steps=300), atol=1e-6, rtol=0)
