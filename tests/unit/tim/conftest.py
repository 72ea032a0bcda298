"""Shared fixtures of the TiM plugin tests: float64 oracles on the linear and TrigFlow paths."""

from __future__ import annotations

import pytest
import torch

from .oracle import GaussianOracle, linear_oracle, trigflow_oracle


@pytest.fixture(params=["linear", "trigflow"])
def oracle(request: pytest.FixtureRequest) -> GaussianOracle:
    """The Gaussian oracle (docs/math.md s8) with ``s = 0.5`` on each path."""
    return linear_oracle(0.5) if request.param == "linear" else trigflow_oracle(0.5)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)

