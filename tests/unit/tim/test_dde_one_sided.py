"""The one-sided DDE (``dde`` with ``stencil = "one-sided"``): first-order accuracy, reuse of the
main pass, boundary handling, and its hand-over from the ``tim`` objective."""

from __future__ import annotations

import torch
from genflow_tim.derivatives import DDE, DdeConfig, one_sided_step
from genflow_tim.objective import TimObjective, TimObjectiveConfig

from genflow.components.paths import LinearPath
from genflow.interfaces import Batch, Condition, DataSpec, Derivative, bind

from .oracle import MLPBackbone

N, D = 32, 3


def _analytic(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``F = sin(3 t) x + t^2 x^2``."""
    tt = t[:, None]
    return torch.sin(3 * tt) * x + tt**2 * x**2


def _analytic_dt(x: torch.Tensor, t: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """``dF/dt`` along ``(dx, 1)``: partial in ``t`` plus ``grad_x F . dx``."""
    tt = t[:, None]
    return 3 * torch.cos(3 * tt) * x + 2 * tt * x**2 + (torch.sin(3 * tt) + 2 * tt**2 * x) * dx


def _inputs(gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    t = 0.2 + 0.6 * torch.rand(N, generator=gen, dtype=torch.float64)
    x = torch.randn(N, D, generator=gen, dtype=torch.float64)
    dx = torch.randn(N, D, generator=gen, dtype=torch.float64)
    return x, t, dx


def _one_sided(epsilon: float = 0.005, **options) -> DDE:
    return DDE(DdeConfig(epsilon=epsilon, stencil="one-sided", **options))


def _error(provider: Derivative, gen: torch.Generator) -> float:
    x, t, dx = _inputs(gen)
    got = provider.time_derivative(_analytic, x, t, dx, t_min=torch.zeros_like(t))
    exact = _analytic_dt(x, t, dx)
    return ((got - exact).norm() / exact.norm()).item()


def test_one_sided_is_first_order(gen):
    """Halving ``e`` halves the error (first order), against a quarter for the central stencil."""
    state = gen.get_state()
    errors = {}
    for eps in (0.01, 0.005, 0.0025):
        gen.set_state(state)
        errors[eps] = _error(_one_sided(eps), gen)
    assert errors[0.01] < 0.05
    for big, small in ((0.01, 0.005), (0.005, 0.0025)):
        assert 1.8 < errors[big] / errors[small] < 2.2
    gen.set_state(state)
    central = _error(DDE(DdeConfig(epsilon=0.005)), gen)
    assert central < errors[0.005] / 10


def test_reused_output_equals_recomputed_and_reference(gen):
    """Handing over ``F_t`` (one extra call on N rows) gives exactly what recomputing it (one batched
    call on 2N rows) and a plain two-call reference give."""
    x, t, dx = _inputs(gen)
    backbone = MLPBackbone(D)
    r = t * 0.5
    fn = bind(backbone, r, Condition())
    calls: list[int] = []

    def counted(x_, t_):
        calls.append(x_.shape[0])
        return fn(x_, t_)

    provider = _one_sided()
    F_t = fn(x, t)
    reused = provider.time_derivative(counted, x, t, dx, t_min=r, F_t=F_t)
    assert calls == [N]
    recomputed = provider.time_derivative(counted, x, t, dx, t_min=r)
    assert calls == [N, 2 * N]
    s = one_sided_step(t, r, 1.0, 0.005)
    reference = (fn(x + s[:, None] * dx, t + s) - fn(x, t)) / s[:, None]
    torch.testing.assert_close(reused, reference, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(recomputed, reference, rtol=1e-9, atol=1e-9)


def test_step_stays_inside_the_interval():
    t = torch.tensor([0.5, 0.999, 0.101, 0.3, 0.4], dtype=torch.float64)
    t_min = torch.tensor([0.0, 0.0, 0.1, 0.298, 0.4], dtype=torch.float64)
    s = one_sided_step(t, t_min, 1.0, 0.005)
    torch.testing.assert_close(s, torch.tensor([0.005, -0.005, 0.005, 0.005, 0.005], dtype=torch.float64))
    assert ((t + s <= 1.0) & (t + s >= t_min)).all()
    # neither side fits: the longer one, shortened to the room left
    narrow = one_sided_step(torch.tensor([0.9995, 0.9985]), torch.tensor([0.997, 0.998]), 1.0, 0.005)
    torch.testing.assert_close(narrow, torch.tensor([-0.0025, 0.0015]))


def test_zero_width_interval_gives_zero(gen):
    x, t, dx = _inputs(gen)
    got = _one_sided().time_derivative(_analytic, x, torch.ones_like(t), dx, t_min=torch.ones_like(t))
    assert torch.isfinite(got).all() and (got == 0).all()


def test_fp32_precision_under_autocast_recomputes_the_main_pass(gen):
    """A main pass run under autocast is not reused by fp32 passes (mixed precisions do not cancel)."""
    x, t, dx = (v.float() for v in _inputs(gen))
    calls: list[int] = []

    def fn(x_, t_):
        calls.append(x_.shape[0])
        return _analytic(x_, t_)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        _one_sided(precision="fp32").time_derivative(fn, x, t, dx, F_t=fn(x, t))
        assert calls == [N, 2 * N]
        calls.clear()
        _one_sided(precision="model").time_derivative(fn, x, t, dx, F_t=fn(x, t))
        assert calls == [N, N]


def _objective(derivative: Derivative) -> TimObjective:
    return TimObjective(TimObjectiveConfig(), path=LinearPath(), derivative=derivative, spec=DataSpec(shape=(D,)))


class _Recompute(Derivative):
    """The one-sided provider as an ordinary one (``uses_output`` False): recomputes ``F(t)``."""

    def __init__(self) -> None:
        self.inner = _one_sided()

    def time_derivative(self, fn, x_t, t, dx_dt, *, t_min=None, t_max=1.0):
        return self.inner.time_derivative(fn, x_t, t, dx_dt, t_min=t_min, t_max=t_max)


def test_objective_hands_over_its_main_pass(gen):
    """The ``tim`` objective runs the main pass first and reuses it: the same loss as recomputing,
    with one pass fewer on the ``t != r`` rows."""
    batch = Batch(x=torch.randn(64, D, generator=gen, dtype=torch.float64))
    backbone = MLPBackbone(D)
    losses, calls = {}, {}
    for name, provider in (("reuse", _one_sided()), ("recompute", _Recompute())):
        backbone.seen_dtypes.clear()
        losses[name] = _objective(provider).loss(backbone, batch, generator=torch.Generator().manual_seed(3)).loss
        calls[name] = len(backbone.seen_dtypes)
    torch.testing.assert_close(losses["reuse"], losses["recompute"], rtol=1e-12, atol=1e-12)
    assert calls == {"reuse": 2, "recompute": 2}  # main + one call each (N rows vs a batched 2N)
    losses["reuse"].backward()
    assert all(p.grad is not None for p in backbone.parameters())


class _Noisy(MLPBackbone):
    """``F`` plus one scalar draw of the global RNG (a stand-in for dropout)."""

    def forward(self, x_t, t, r, cond):
        return super().forward(x_t, t, r, cond) + torch.randn((), dtype=x_t.dtype)


def test_provider_pass_replays_the_main_pass_rng_state(gen):
    """The extra pass starts from the RNG state of the main pass (the noise cancels in the
    difference), and the global RNG advances exactly as the main pass alone advances it."""
    objective = _objective(_one_sided())
    x_t, t, dx = _inputs(gen)
    r = torch.where(torch.arange(N) % 2 == 0, t, 0.5 * t)  # half the rows need a derivative
    results = {}
    for name, backbone in (("plain", MLPBackbone(D)), ("noisy", _Noisy(D))):
        torch.manual_seed(0)
        results[name] = objective.forward_then_derivative(backbone, x_t, t, r, dx, Condition())
    after = torch.get_rng_state()
    torch.manual_seed(0)
    torch.randn((), dtype=torch.float64)
    torch.testing.assert_close(after, torch.get_rng_state())
    torch.testing.assert_close(results["noisy"][1], results["plain"][1], rtol=1e-9, atol=1e-9)
    assert (results["plain"][1][0::2] == 0).all() and (results["plain"][1][1::2] != 0).all()
