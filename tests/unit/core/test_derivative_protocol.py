"""The derivative protocol of ``genflow.interfaces.Derivative`` and ``genflow.testing.check_derivative``:
the check accepts correct providers of either order and rejects wrong ones; the protocol replays the
random state of the main pass for a real dropout network."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from genflow.interfaces import Condition, Derivative, TimeFunction, bind, expand_like, interval_rows
from genflow.plugins import PluginManager
from genflow.registry import Component
from genflow.rng import preserved_rng
from genflow.testing import check_derivative


class ForwardDifference(Derivative):
    """``[F(x + h dx, t + h) - F(x, t)] / h``, first order; ``keep_rng=False`` forgets ``preserved_rng``."""

    order = 1

    def __init__(self, h: float = 1e-3, keep_rng: bool = True, clamp: bool = True) -> None:
        self.h, self.keep_rng, self.clamp = h, keep_rng, clamp

    def time_derivative(self, fn: TimeFunction, x_t: Tensor, t: Tensor, dx_dt: Tensor, *,
                        t_min: Tensor | None = None, t_max: float = 1.0, F_t: Tensor | None = None) -> Tensor:
        step = torch.full_like(t, self.h)
        if self.clamp:
            step = torch.where(t + step > t_max, -step, step)
        x_s = x_t + expand_like(step, x_t) * dx_dt
        with torch.no_grad():
            if self.keep_rng:
                with preserved_rng(x_t.device):
                    F = fn(torch.cat([x_s, x_t]), torch.cat([t + step, t]))
            else:
                F = fn(torch.cat([x_s, x_t]), torch.cat([t + step, t]))
        F_s, F_0 = F.chunk(2)
        return ((F_s - F_0) / expand_like(step, x_t)).detach()


class Manager:
    """A stand-in for ``PluginManager.get`` that serves one provider."""

    def __init__(self, provider: Derivative) -> None:
        self.provider = provider

    def get(self, kind: str, name: str) -> Component:
        return Component(name=name, build=lambda config: self.provider)


def test_a_correct_first_order_provider_passes_at_order_1_and_fails_at_order_2():
    check_derivative(Manager(ForwardDifference()), "fd")
    with pytest.raises(AssertionError, match="relative error"):
        check_derivative(Manager(ForwardDifference()), "fd", order=2)


def test_a_provider_that_advances_the_rng_fails():
    with pytest.raises(AssertionError, match="advanced the global RNG"):
        check_derivative(Manager(ForwardDifference(keep_rng=False)), "fd")


def test_a_provider_that_leaves_the_interval_fails():
    with pytest.raises(AssertionError, match="outside"):
        check_derivative(Manager(ForwardDifference(clamp=False)), "fd")


def test_a_wrong_provider_fails():
    with pytest.raises(AssertionError, match="relative error"):
        check_derivative(Manager(ForwardDifference(h=0.2)), "fd")


class DropoutMLP(torch.nn.Module):
    """A network with dropout (train mode): its output depends on the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                                         torch.nn.Linear(64, 3)).double()

    def forward(self, x: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        return self.inner(torch.cat([x, t[:, None], r[:, None]], dim=1))


@pytest.mark.parametrize(("name", "overrides"), [("dde", {}), ("dde", {"stencil": "one-sided"}),
                                                 ("jvp", {})])
def test_forward_and_derivative_sees_the_dropout_masks_of_the_main_pass(name, overrides):
    """``dF/dt`` of the protocol matches the exact derivative of the network with the main pass's mask."""
    from genflow.testing import build_derivative

    provider = build_derivative(PluginManager(), name, overrides)
    if name == "dde" and not provider.uses_output:
        pytest.skip("the central dde draws one mask for its 2N batch: documented to need a forward without dropout")
    net = DropoutMLP()
    g = torch.Generator().manual_seed(1)
    x_t, dx_dt = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    t = torch.linspace(0.3, 0.8, 6, dtype=torch.float64)
    r = torch.cat([t[:4] - 0.2, t[4:]])
    torch.manual_seed(7)
    out = provider.forward_and_derivative(net, x_t, t, r, dx_dt, Condition(), t_max=1.0)
    rows = interval_rows(t, r)

    def with_main_mask(x: Tensor, s: Tensor) -> Tensor:  # the network with the dropout mask of the main pass
        torch.manual_seed(7)
        return bind(net, r, Condition())(x, s)

    torch.testing.assert_close(out.F, with_main_mask(x_t, t))
    _, exact = torch.func.jvp(with_main_mask, (x_t, t), (dx_dt, torch.ones_like(t)))
    tol = 1e-2 if provider.order == 1 else 1e-4
    torch.testing.assert_close(out.dF_dt[rows], exact[rows], rtol=tol, atol=tol)
    assert not out.dF_dt[4:].any()
