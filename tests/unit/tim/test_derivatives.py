"""The ``dde`` and ``jvp`` providers on a small network (docs/math.md section 4)."""

from __future__ import annotations

import copy

import pytest
import torch
from genflow_tim.derivatives import DDE, JVP, DdeConfig, stencil

from genflow.errors import GenflowError
from genflow.interfaces import Condition, bind

from .oracle import MLPBackbone

N, D = 64, 3


def _inputs(gen: torch.Generator, dtype: torch.dtype = torch.float64):
    t = 0.1 + 0.8 * torch.rand(N, generator=gen, dtype=dtype)
    r = t * torch.rand(N, generator=gen, dtype=dtype) * 0.9
    x_t = torch.randn(N, D, generator=gen, dtype=dtype)
    dx_dt = torch.randn(N, D, generator=gen, dtype=dtype)
    return x_t, t, r, dx_dt


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_dde_matches_jvp_to_epsilon_squared(gen):
    """On a real network in float64 DDE is JVP up to ``O(e^2)`` (docs/math.md s4)."""
    x_t, t, r, dx_dt = _inputs(gen)
    fn = bind(MLPBackbone(D), r, Condition())
    exact = JVP().time_derivative(fn, x_t, t, dx_dt, t_min=r)
    for eps in (0.01, 0.005):
        approx = DDE(DdeConfig(epsilon=eps)).time_derivative(fn, x_t, t, dx_dt, t_min=r)
        assert _rel(approx, exact) < eps**2


def test_dde_batched_is_one_call_on_2n_rows(gen):
    x_t, t, r, dx_dt = _inputs(gen)
    sizes = []

    def fn(x, t_):
        sizes.append(x.shape[0])
        return x * t_[:, None]

    DDE(DdeConfig()).time_derivative(fn, x_t, t, dx_dt, t_min=r)
    assert sizes == [2 * N]


def test_dde_fp32_precision_under_bf16_autocast(gen):
    """``precision="fp32"`` runs the passes without autocast on fp32 inputs: the ``1 / (2e)`` factor
    no longer amplifies bf16 rounding."""
    x_t, t, r, dx_dt = _inputs(gen, torch.float32)
    backbone = MLPBackbone(D, dtype=torch.float32)
    fn = bind(backbone, r, Condition())
    reference = bind(copy.deepcopy(backbone).double(), r.double(), Condition())
    exact = JVP().time_derivative(reference, x_t.double(), t.double(), dx_dt.double(), t_min=r.double())
    errors = {}
    for precision in ("fp32", "model"):
        backbone.seen_autocast.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dF = DDE(DdeConfig(precision=precision)).time_derivative(fn, x_t, t, dx_dt, t_min=r)
        assert dF.dtype == torch.float32
        errors[precision] = _rel(dF.double(), exact)
        assert backbone.seen_autocast == [precision == "model"]
    assert errors["fp32"] < 1e-3
    assert errors["model"] > 10 * errors["fp32"]


def test_dde_fp32_keeps_float64(gen):
    x_t, t, r, dx_dt = _inputs(gen)
    backbone = MLPBackbone(D)
    DDE(DdeConfig(precision="fp32")).time_derivative(bind(backbone, r, Condition()), x_t, t, dx_dt, t_min=r)
    assert backbone.seen_dtypes == [torch.float64]


def test_stencil_stays_inside_the_interval():
    t = torch.tensor([0.5, 0.101, 0.999, 0.5, 0.5])
    t_min = torch.tensor([0.0, 0.1, 0.2, 0.499, 0.4995])
    a, b = stencil(t, t_min, 1.0, 0.005)
    torch.testing.assert_close(b - a, torch.tensor([0.01, 0.01, 0.01, 0.01, 0.01]))
    assert (a >= t_min).all() and (b <= 1.0).all()
    torch.testing.assert_close(a[:3], torch.tensor([0.495, 0.1, 0.99]))  # central, shifted up, shifted down
    # an interval shorter than 2e: h shrinks to half of it
    a, b = stencil(torch.tensor([0.997]), torch.tensor([0.996]), 1.0, 0.005)
    torch.testing.assert_close((a, b), (torch.tensor([0.996]), torch.tensor([1.0])))


def test_dde_evaluates_only_inside_t_min_t_max(gen):
    x_t, t, r, dx_dt = _inputs(gen)
    t = torch.cat([t[:20], r[20:40] + 1e-3, 1 - 1e-3 * torch.rand(24, generator=gen, dtype=torch.float64)])
    seen: list[torch.Tensor] = []

    def fn(x, t_):
        seen.append(t_)
        return x

    DDE().time_derivative(fn, x_t, t, dx_dt, t_min=r, t_max=1.0)
    b, a = seen[0].chunk(2)  # one batched call: [F(b), F(a)]
    assert (a >= r - 1e-15).all() and (b <= 1.0).all() and (a <= t).all() and (b >= t).all()


@pytest.mark.parametrize("provider", [DDE(DdeConfig()), JVP()])
def test_providers_keep_the_global_rng_and_detach(provider, gen):
    x_t, t, r, dx_dt = _inputs(gen)
    backbone = MLPBackbone(D, dropout=0.2)
    state = torch.get_rng_state()
    dF = provider.time_derivative(bind(backbone, r, Condition()), x_t, t, dx_dt, t_min=r)
    assert torch.equal(torch.get_rng_state(), state)
    assert not dF.requires_grad
    assert any(p.requires_grad for p in backbone.parameters())


def test_jvp_refuses_what_it_cannot_differentiate():
    backbone = MLPBackbone(D)
    JVP().check_backbone(backbone, distributed=False)
    with pytest.raises(GenflowError, match="dde"):
        JVP().check_backbone(backbone, distributed=True)
    backbone.supports_jvp = False
    with pytest.raises(GenflowError, match="dde"):
        JVP().check_backbone(backbone, distributed=False)
    DDE().check_backbone(backbone, distributed=True)  # forward passes only: always fine
    assert DDE.forward_only and not JVP.forward_only
