"""The float64 Gaussian-oracle checks of docs/math.md section 8, on the linear and TrigFlow paths."""

from __future__ import annotations

import torch
from genflow_tim.derivatives import DDE, JVP, DdeConfig
from genflow_tim.objective import TimObjective, TimObjectiveConfig
from genflow_tim.sampler import TransitionSampler, TransitionSamplerConfig

from genflow.interfaces import Batch, Condition, DataSpec, bind, expand_like
from genflow.objectives import transition_target

from .oracle import GaussianOracle, OracleBackbone, interior_times

EPS = 0.005


def _state(oracle: GaussianOracle, n: int, gen: torch.Generator, gap: float = 2.5 * EPS):
    t, r = interior_times(n, oracle.path.t_max, gap, gen)
    x_t = torch.randn(n, 3, generator=gen, dtype=torch.float64) * oracle.V(t).sqrt()[:, None]
    return x_t, t, r


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error ``||a - b|| / ||b||`` over the batch (a per-row ratio is meaningless where
    ``dF*/dt`` crosses zero)."""
    return ((a - b).norm() / b.norm()).item()


# ---------------------------------------------------------------- the oracle itself


def test_identity_residual_of_F_star(oracle, gen):
    x_t, t, r = _state(oracle, 512, gen)
    F, u, dF = oracle.F(x_t, t, r), oracle.u(x_t, t), oracle.dF_dt(x_t, t, r)
    A, B, dB = (expand_like(c, x_t) for c in oracle.path.transition_coefficients(t, r))
    dA = expand_like(oracle.dA_dt(t, r), x_t)
    # docs/math.md s3 identity, general form: d/dt (A x_t + B F) = 0  <=>  A' x_t + A u + B' F + B dF/dt = 0
    assert (dA * x_t + A * u + dB * F + B * dF).abs().max() < 1e-10
    if oracle.path.t_max == 1.0:  # linear path: F = u - (t - r) dF/dt
        assert (F - (u - expand_like(t - r, x_t) * dF)).abs().max() < 1e-10


def test_analytic_derivative_matches_trajectory_differences(oracle, gen):
    """The closed-form ``dF*/dt`` against a 4th-order difference along the exact ODE trajectory."""
    x_t, t, r = _state(oracle, 64, gen, gap=0.05)
    h = 1e-3

    def F_at(dt: float) -> torch.Tensor:
        return oracle.F(oracle.flow_map(x_t, t, t + dt), t + dt, r)

    fd = (8 * (F_at(h) - F_at(-h)) - (F_at(2 * h) - F_at(-2 * h))) / (12 * h)
    assert _rel(fd, oracle.dF_dt(x_t, t, r)) < 1e-8


# ---------------------------------------------------------------- derivative providers


def test_jvp_reproduces_dF_dt(oracle, gen):
    x_t, t, r = _state(oracle, 256, gen)
    fn = bind(OracleBackbone(oracle), r, Condition())
    dF = JVP().time_derivative(fn, x_t, t, oracle.u(x_t, t), t_min=r, t_max=oracle.path.t_max)
    assert (dF - oracle.dF_dt(x_t, t, r)).abs().max() < 1e-10


def test_dde_reproduces_dF_dt_in_the_interior(oracle, gen):
    x_t, t, r = _state(oracle, 256, gen, gap=2 * EPS + 1e-6)
    fn = bind(OracleBackbone(oracle), r, Condition())
    dde = DDE(DdeConfig(epsilon=EPS))
    dF = dde.time_derivative(fn, x_t, t, oracle.u(x_t, t), t_min=r, t_max=oracle.path.t_max)
    assert _rel(dF, oracle.dF_dt(x_t, t, r)) < 1e-4


def test_dde_one_sided_near_the_bounds(oracle, gen):
    n, t_max = 128, oracle.path.t_max
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    # half the rows just above r, half just below t_max: the central stencil would leave [r, t_max]
    t_near_r = 0.2 + 0.5 * u
    r_near = t_near_r - 2 * EPS * u.clamp(min=0.05)
    t_near_top = t_max - 2 * EPS * u
    t, r = torch.cat([t_near_r, t_near_top]), torch.cat([r_near, 0.3 * t_near_top])
    x_t = torch.randn(2 * n, 3, generator=gen, dtype=torch.float64)
    fn = bind(OracleBackbone(oracle), r, Condition())
    dF = DDE(DdeConfig(epsilon=EPS)).time_derivative(fn, x_t, t, oracle.u(x_t, t), t_min=r, t_max=t_max)
    assert _rel(dF, oracle.dF_dt(x_t, t, r)) < 1e-2


# ---------------------------------------------------------------- the objective's target


def test_target_built_from_u_equals_F_star(oracle, gen):
    x_t, t, r = _state(oracle, 256, gen)
    F_hat = transition_target(oracle.path, x_t, oracle.u(x_t, t), oracle.dF_dt(x_t, t, r), t, r)
    assert (F_hat - oracle.F(x_t, t, r)).abs().max() < 1e-10


def test_objective_target_with_jvp_equals_F_star(oracle, gen):
    """The objective's own derivative step (row selection, ``bind``, ``jvp``) then the target."""
    x_t, t, r = _state(oracle, 128, gen)
    r[:32] = t[:32]  # flow-matching rows: target = u, no derivative
    spec = DataSpec(shape=(3,))
    objective = TimObjective(TimObjectiveConfig(), path=oracle.path, derivative=JVP(), spec=spec)
    u = oracle.u(x_t, t)
    dF = objective.time_derivative(OracleBackbone(oracle), x_t, t, r, u, Condition())
    F_hat = transition_target(oracle.path, x_t, u, dF, t, r)
    assert (F_hat - oracle.F(x_t, t, r)).abs().max() < 1e-10


def test_oracle_is_the_stationary_point_of_the_loss(oracle):
    """``E[F_hat | x_t] = F*``: the loss gradient vanishes at the oracle but not next to it."""

    def grad_at(scale: float) -> float:
        backbone = OracleBackbone(oracle)
        with torch.no_grad():
            backbone.scale.fill_(scale)
        cfg = TimObjectiveConfig(weighting="constant", adaptive=False, directional=False, label_dropout=0.0)
        objective = TimObjective(cfg, path=oracle.path, derivative=JVP(), spec=DataSpec(shape=(2,)))
        x = oracle.s * torch.randn(80_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        out = objective.loss(backbone, Batch(x=x), generator=torch.Generator().manual_seed(1))
        out.loss.backward()
        return backbone.scale.grad.item()

    # With fixed samples the loss is quadratic in the scale: grad(0) is the Monte Carlo error of the
    # expectation (~1/sqrt(rows); 80k rows keep it well under a tenth of grad(0.1) on both paths)
    assert abs(grad_at(0.0)) < 0.1 * abs(grad_at(0.1))


# ---------------------------------------------------------------- the sampler


def test_sampler_maps_noise_to_data_in_1_and_8_steps(oracle):
    noise = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = TransitionSampler(TransitionSamplerConfig(), path=oracle.path, spec=DataSpec(shape=(2,)))
    for steps in (1, 8):
        x_0 = sampler.sample(OracleBackbone(oracle), noise, Condition(), steps=steps)
        assert (x_0 - oracle.s * noise).abs().max() < 1e-10  # the exact flow map, step by step
        assert abs(x_0.std().item() / oracle.s - 1) < 0.01
