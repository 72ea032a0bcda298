"""DDE agrees with JVP on a randomly initialised debug ``tim-dit`` in float64 (issue: TiM plugins, DoD 2)."""

from __future__ import annotations

import torch
from genflow_tim.derivatives import DDE, JVP, DdeConfig
from genflow_tim.dit import DiTConfig, build_dit

from genflow.interfaces import Condition, DataSpec, bind


def random_debug_dit() -> torch.nn.Module:
    """The debug preset with its zero-initialised output layers re-randomised, so F depends on t."""
    torch.manual_seed(0)
    model = build_dit(DiTConfig(preset="debug"), spec=DataSpec(shape=(4, 8, 8), num_classes=10)).double()
    model.init_weights()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if (p == 0).all():
                p.copy_(0.2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model.eval()


def test_dde_matches_jvp_on_a_random_dit_in_float64():
    model = random_debug_dit()
    generator = torch.Generator().manual_seed(2)
    n = 8
    t = 0.2 + 0.7 * torch.rand(n, generator=generator, dtype=torch.float64)
    r = t * 0.5
    x_t = torch.randn(n, 4, 8, 8, generator=generator, dtype=torch.float64)
    dx_dt = torch.randn(n, 4, 8, 8, generator=generator, dtype=torch.float64)
    cond = Condition(labels=torch.arange(n) % 11)
    fn = bind(model, r, cond)
    exact = JVP().time_derivative(fn, x_t, t, dx_dt, t_min=r)
    approx = DDE(DdeConfig()).time_derivative(fn, x_t, t, dx_dt, t_min=r)
    relative = ((approx - exact).norm() / exact.norm()).item()
    assert exact.abs().max() > 1e-3  # the output really depends on t
    assert relative < 1e-3, relative
