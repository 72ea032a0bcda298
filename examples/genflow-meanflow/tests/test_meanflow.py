"""The plugin's own tests: genflow's public contract checks, and float64 oracles of the MeanFlow math.

Run them after installing the plugin: ``pip install -e . && pytest tests``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from genflow.interfaces import Backbone, Batch, Condition, DataSpec
from genflow.objectives import interval_target
from genflow.plugins import PluginManager
from genflow.testing import CHECKS
from torch import Tensor

from genflow_meanflow.objective import MeanFlow, MeanFlowConfig, build, sample_times
from genflow_meanflow.sampler import MeanFlowSampler

PLUGIN = "meanflow"
MANAGER = PluginManager()
#: Every component this plugin registers, by kind: the contract checks run over all of them.
OURS = [(kind, name) for kind, table in MANAGER.components.items() for name, entry in table.items()
        if entry.plugin == PLUGIN]
S = 0.5  # data std of the analytic oracle


def test_the_plugin_is_installed_and_registers_objective_and_sampler():
    assert PLUGIN in MANAGER.plugin_names()
    assert ("objective", "meanflow") in OURS and ("sampler", "meanflow") in OURS


@pytest.mark.parametrize(("kind", "name"), OURS, ids=[f"{k}:{n}" for k, n in OURS])
def test_contract(kind, name):
    CHECKS[kind](MANAGER, name)


# --------------------------------------------------------------------------------------------
# Analytic oracle: data N(0, S^2), noise N(0, 1), linear path z_t = (1 - t) x + t e.
# The marginal flow is z_tau = z_t sigma_tau / sigma_t with sigma_t^2 = (1 - t)^2 S^2 + t^2, so the
# exact average velocity is u(z, r, t) = z (1 - sigma_r / sigma_t) / (t - r) and v(z, t) = z sigma_t' / sigma_t.
# --------------------------------------------------------------------------------------------


def sigma(t: Tensor) -> Tensor:
    return ((1 - t) ** 2 * S**2 + t**2).sqrt()


def d_sigma(t: Tensor) -> Tensor:
    return (t - (1 - t) * S**2) / sigma(t)


class ExactAverageVelocity(Backbone):
    """``u(z, r, t)`` of the Gaussian oracle; ``v(z, t)`` where ``r = t``."""

    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        gap = torch.where(t == r, torch.ones_like(t), t - r)
        u = (1 - sigma(r) / sigma(t)) / gap
        u = torch.where(t == r, d_sigma(t) / sigma(t), u)
        return x_t * u[:, None]

    def init_weights(self) -> None:
        pass


def _built(kind: str, name: str) -> Any:
    """A registered component with default settings (paths and derivatives take no context)."""
    component = MANAGER.get(kind, name)
    return component.build(component.config())


def _objective(derivative: str, config: MeanFlowConfig | None = None) -> MeanFlow:
    return build(config or MeanFlowConfig(), path=_built("path", "linear"), derivative=_built("derivative", derivative),
                 spec=DataSpec(shape=(3,)))


@pytest.mark.parametrize(("derivative", "tol"), [("jvp", 1e-10), ("dde", 1e-4)])
def test_target_of_the_exact_average_velocity_is_itself(derivative, tol):
    """With the marginal velocity, ``v - (t - r) du/dt = u`` (the MeanFlow identity) for the exact ``u``."""
    objective, u = _objective(derivative), ExactAverageVelocity()
    gen = torch.Generator().manual_seed(0)
    z_t = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    t = torch.rand(16, generator=gen, dtype=torch.float64) * 0.8 + 0.15
    r = t * torch.rand(16, generator=gen, dtype=torch.float64)
    cond = Condition()
    v = u(z_t, t, t, cond)  # the marginal velocity
    du_dt = objective.time_derivative(u, z_t, t, r, v, cond)
    target = interval_target(v, du_dt, t, r)
    torch.testing.assert_close(target, u(z_t, t, r, cond), rtol=tol, atol=tol)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_sampler_is_exact_for_the_exact_average_velocity(steps):
    """``x_0 = x_1 - u(x_1, 0, 1) = S x_1`` in one step, and any number of steps."""
    sampler = MeanFlowSampler(path=_built("path", "linear"), spec=DataSpec(shape=(3,)))
    noise = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = sampler.sample(ExactAverageVelocity(), noise, Condition(), steps=steps)
    torch.testing.assert_close(out, S * noise, rtol=1e-12, atol=1e-12)


def test_time_sampling_keeps_the_flow_ratio_and_orders_times():
    t, r = sample_times(MeanFlowConfig(flow_ratio=0.75), 64, generator=torch.Generator().manual_seed(0))
    assert (t >= r).all() and ((t > 0) & (t < 1)).all()
    assert int((t == r).sum()) == 48


def test_adaptive_weighting_off_is_plain_mse():
    objective = _objective("dde", MeanFlowConfig(adaptive_p=0.0, flow_ratio=1.0))
    batch = Batch(x=torch.randn(8, 3, generator=torch.Generator().manual_seed(2)))
    out = objective.loss(ExactAverageVelocity(), batch, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.loss, out.per_sample.mean())
