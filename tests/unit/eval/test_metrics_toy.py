"""Done-when 1: the toy metrics rank the exact flow map at the data-to-data floor and a broken model worse."""

from __future__ import annotations

import statistics

import pytest
import torch

from genflow.components.paths import LinearPath
from genflow.data.toy2d import Toy2D, Toy2DConfig
from genflow.eval.flow_map import flow_map, mixture_velocity
from genflow.eval.metrics_toy import (
    SlicedWasserstein,
    SlicedWassersteinConfig,
    TransitionError,
    TransitionErrorConfig,
)
from genflow.interfaces import EvalContext, EvalSamples

N, SEEDS = 2000, range(4)


@pytest.fixture(scope="module")
def dataset():
    return Toy2D(Toy2DConfig(kind="gaussians8"))


def _noise(seed: int) -> torch.Tensor:
    return torch.randn(N, 2, generator=torch.Generator().manual_seed(seed))


def _score(metric, samples, noise, dataset, seed, cache=None):
    context = EvalContext(dataset=dataset, path=LinearPath(), seed=seed, cache=cache if cache is not None else {})
    return metric(EvalSamples(samples=samples, noise=noise), context)


@pytest.fixture(scope="module")
def exact(dataset):
    """Per seed: noise and its exact flow map (RK4, 100 steps: error < 1e-5)."""
    return {s: (_noise(s), flow_map(dataset.mixture(), LinearPath(), _noise(s), steps=100).float()) for s in SEEDS}


def _broken(dataset, noise):
    """Two deliberately broken models: samples shrunk towards 0, and one Euler step of the exact
    velocity (what a flow-matching model does at 1 step: the conditional mean, blurred)."""
    one_step = noise.double() - mixture_velocity(dataset.mixture(), LinearPath(), noise, torch.tensor(1.0))
    return {"one_euler_step": one_step.float()}


def test_exact_flow_map_sits_at_the_data_to_data_floor_and_broken_models_score_worse(dataset, exact):
    metric = SlicedWasserstein(SlicedWassersteinConfig())
    phi, floor, shrunk, euler = [], [], [], []
    for seed in SEEDS:
        noise, target = exact[seed]
        phi.append(_score(metric, target, noise, dataset, seed))
        fresh = dataset.reference(N, seed=1000 + seed).x  # data vs the metric's own reference draw
        floor.append(_score(metric, fresh, noise, dataset, seed))
        shrunk.append(_score(metric, 0.8 * target, noise, dataset, seed))
        euler.append(_score(metric, _broken(dataset, noise)["one_euler_step"], noise, dataset, seed))
    phi_mean, floor_mean = statistics.mean(phi), statistics.mean(floor)
    assert abs(phi_mean - floor_mean) < 0.35 * floor_mean, (phi, floor)
    assert statistics.mean(shrunk) > 1.5 * floor_mean
    assert statistics.mean(euler) > 2 * floor_mean


def test_transition_error_is_zero_for_the_flow_map_and_large_for_broken_models(dataset, exact):
    metric = TransitionError(TransitionErrorConfig(ode_steps=200))
    noise, target = exact[0]
    cache: dict = {}
    assert _score(metric, target, noise, dataset, 0, cache) < 2e-5  # float32 samples of the 100-step solve
    assert _score(metric, 0.8 * target, noise, dataset, 0, cache) > 0.3
    assert _score(metric, _broken(dataset, noise)["one_euler_step"], noise, dataset, 0, cache) > 0.3
    assert "flow_map" in cache  # solved once per noise tensor


def test_transition_error_compares_each_sample_with_its_own_noise(dataset, exact):
    noise, target = exact[0]
    shuffled = target[torch.randperm(N, generator=torch.Generator().manual_seed(0))]
    metric = TransitionError(TransitionErrorConfig(ode_steps=200))
    cache = {"flow_map": (noise, target.double())}  # the exact map of this noise, solved above
    assert _score(metric, shuffled, noise, dataset, 0, cache) > 1.0  # the right distribution, the wrong pairing


def test_applicability(dataset):
    assert TransitionError(TransitionErrorConfig()).applies_to(dataset)
    assert not TransitionError(TransitionErrorConfig()).applies_to(Toy2D(Toy2DConfig(kind="rings")))
    assert SlicedWasserstein(SlicedWassersteinConfig()).applies_to(Toy2D(Toy2DConfig(kind="rings")))
