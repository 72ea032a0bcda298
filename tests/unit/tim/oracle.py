"""The exact Gaussian oracle of docs/math.md section 8, for any path with an exact transition.

Data ``x ~ N(0, s^2 I)``, ``x_t = alpha_t x + sigma_t z``: ``x_t ~ N(0, V(t) I)`` with
``V = alpha^2 s^2 + sigma^2``; the marginal velocity is ``u = V' / (2 V) x_t`` and the flow map is
``Phi(x_t, t, r) = sqrt(V(r) / V(t)) x_t``. The exact transition network solves
``Phi = A x_t + B F``: ``F* = (sqrt(V(r) / V(t)) - A) / B * x_t`` (``t != r``), ``F*(t, t) = u``.
On the linear path this is ``F* = (1 - sqrt(V(r) / V(t))) / (t - r) * x_t`` of docs/math.md s8.
Everything here is written out by hand (no autograd), so it checks the code under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from genflow_tim.trigflow import TrigFlowPath
from torch import Tensor, nn

from genflow.components.paths import LinearPath
from genflow.interfaces import Backbone, Condition, ProbabilityPath, expand_like


class GaussianOracle:
    """Closed forms for ``x ~ N(0, s^2 I)`` on ``path``; ``dA_dt(t, r)`` is the transition's ``dA/dt``."""

    def __init__(self, path: ProbabilityPath, s: float, dA_dt: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.path, self.s, self.dA_dt = path, s, dA_dt

    def V(self, t: Tensor) -> Tensor:
        return self.path.alpha(t) ** 2 * self.s**2 + self.path.sigma(t) ** 2

    def dV(self, t: Tensor) -> Tensor:
        p = self.path
        return 2 * (p.alpha(t) * p.d_alpha(t) * self.s**2 + p.sigma(t) * p.d_sigma(t))

    def k(self, t: Tensor) -> Tensor:
        """``u = k(t) x_t`` with ``k = V' / (2 V)``."""
        return self.dV(t) / (2 * self.V(t))

    def u(self, x_t: Tensor, t: Tensor) -> Tensor:
        return expand_like(self.k(t), x_t) * x_t

    def flow_map(self, x_t: Tensor, t: Tensor, r: Tensor) -> Tensor:
        return expand_like(torch.sqrt(self.V(r) / self.V(t)), x_t) * x_t

    def c(self, t: Tensor, r: Tensor) -> Tensor:
        """``F* = c(t, r) x_t``; ``c = k(t)`` on ``t = r`` rows."""
        A, B, _ = self.path.transition_coefficients(t, r)
        same = t == r
        q = torch.sqrt(self.V(r) / self.V(t))
        return torch.where(same, self.k(t), (q - A) / torch.where(same, torch.ones_like(B), B))

    def F(self, x_t: Tensor, t: Tensor, r: Tensor) -> Tensor:
        return expand_like(self.c(t, r), x_t) * x_t

    def dF_dt(self, x_t: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """``dF*/dt`` along ``(u, 1, 0)`` for ``t != r``: ``(dc/dt + c k) x_t``."""
        A, B, dB = self.path.transition_coefficients(t, r)
        q, k = torch.sqrt(self.V(r) / self.V(t)), self.k(t)
        dq = -q * k  # d/dt sqrt(V(r) / V(t))
        dc = ((dq - self.dA_dt(t, r)) * B - (q - A) * dB) / B**2
        return expand_like(dc + self.c(t, r) * k, x_t) * x_t


def linear_oracle(s: float = 0.5) -> GaussianOracle:
    return GaussianOracle(LinearPath(), s, lambda t, r: torch.zeros_like(t))


def trigflow_oracle(s: float = 0.5) -> GaussianOracle:
    return GaussianOracle(TrigFlowPath(), s, lambda t, r: -torch.sin(t - r))


class OracleBackbone(Backbone):
    """``F*(x_t, t, r)`` in float64, times ``(1 + scale)`` with a learnable ``scale`` (init 0)."""

    def __init__(self, oracle: GaussianOracle) -> None:
        super().__init__()
        self.oracle = oracle
        self.scale = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.calls: list[int] = []

    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        self.calls.append(x_t.shape[0])
        if not torch.is_grad_enabled() and (t == t[0]).all() and (r == r[0]).all():
            # a sampler step: one (t, r) for every row (float64 sin / cos are slow on CPU)
            return (1 + self.scale) * self.oracle.c(t[:1], r[:1]) * x_t
        return (1 + self.scale) * self.oracle.F(x_t, t, r)

    def init_weights(self) -> None:
        nn.init.zeros_(self.scale)


class MLPBackbone(Backbone):
    """A tiny smooth network ``F(x_t, t, r, label)`` on ``(N, D)`` data, for derivative tests."""

    def __init__(
        self, dim: int = 3, hidden: int = 32, num_classes: int = 0, dtype: torch.dtype = torch.float64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.inp = nn.Linear(dim + 2, hidden, dtype=dtype)
        self.embed = nn.Embedding(num_classes + 1, hidden, dtype=dtype) if num_classes else None
        self.out = nn.Linear(hidden, dim, dtype=dtype)
        self.dropout = nn.Dropout(dropout)
        self.seen_autocast: list[bool] = []
        self.seen_dtypes: list[torch.dtype] = []
        self.init_weights()

    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        self.seen_autocast.append(torch.is_autocast_enabled(x_t.device.type))
        self.seen_dtypes.append(x_t.dtype)
        h = self.inp(torch.cat([x_t, t[:, None].to(x_t.dtype), r[:, None].to(x_t.dtype)], dim=1))
        if self.embed is not None and cond.labels is not None:
            h = h + self.embed(cond.labels)
        return self.out(self.dropout(torch.tanh(h)))

    def init_weights(self) -> None:
        gen = torch.Generator().manual_seed(0)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(max(p.shape[-1], 1)))


def interior_times(n: int, t_max: float, gap: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(t, r)``, ``(n,)`` float64, with ``t - r >= gap`` and ``t_max - t >= gap``."""
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    t = 2 * gap + (t_max - 3 * gap) * u[:, 0]
    return t, (t - gap) * u[:, 1]
