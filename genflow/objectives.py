"""Building blocks of training objectives: time sampling, target assembly, weighting.

Public, so an objective plugin assembles its loss from the same pieces as the built-in ``tim``
objective instead of copying them. The paper is "Transition Models: Rethinking the Generative
Learning Objective", arXiv 2509.04394 (TiM). A helper that implements a paper equation whose number
has been checked against the paper names it ("arXiv 2509.04394, Eq. N"; so far only Eq. 9); the
others name the docs/math.md section they implement, and say so where the helper is genflow's own.
Conventions: ``t = 0`` is data, ``t = t_max`` noise; the network is ``F(x_t, t, r)`` with ``t >= r``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.autograd import forward_ad as fwAD

from genflow.interfaces import ProbabilityPath, expand_like
from genflow.timesteps import logit_normal

Weighting = Literal["tangent", "linear", "odds", "constant"]
WEIGHTINGS: tuple[str, ...] = ("tangent", "linear", "odds", "constant")

# --------------------------------------------------------------------------------------------
# Time sampling
# --------------------------------------------------------------------------------------------


def ordered_times(
    n: int, p_mean: float, p_std: float, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Unit times ``(t, r)``, ``(n,)`` each, ``t >= r``: the max and min of two logit-normal draws
    ``sigmoid(N(p_mean, p_std^2))``: TiM's interval sampling as the reference implements it,
    docs/math.md section 5, steps 1-2 (no equation number cited: none checked against arXiv
    2509.04394). The draw itself is ``genflow.timesteps.logit_normal``. On ``generator``'s device."""
    device = generator.device
    t1 = logit_normal(n, p_mean, p_std, generator=generator, device=device, dtype=dtype)
    t2 = logit_normal(n, p_mean, p_std, generator=generator, device=device, dtype=dtype)
    return torch.maximum(t1, t2), torch.minimum(t1, t2)


def split_rows(n: int, fractions: Sequence[float], *, generator: torch.Generator) -> list[Tensor]:
    """Disjoint random row sets, ``round(n f)`` rows for each fraction ``f`` (in order), from one
    permutation: the batch mixture of TiM (a share of ``r = t`` rows, a share of ``r = 0`` rows),
    docs/math.md section 5, step 3; the fixed counts are genflow's own (they keep the derivative's
    batch size constant from step to step)."""
    if sum(fractions) > 1 + 1e-12:
        raise ValueError(f"the fractions {list(fractions)} add up to more than 1")
    perm = torch.randperm(n, generator=generator, device=generator.device)
    out, start = [], 0
    for f in fractions:
        count = math.floor(n * f + 0.5)
        out.append(perm[start : start + count])
        start += count
    return out


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


def interval_target(v_t: Tensor, dF_dt: Tensor, t: Tensor, r: Tensor) -> Tensor:
    """``F_hat = v_t - (t - r) dF/dt``, shaped like ``v_t``: the transition target on the linear path
    (arXiv 2509.04394, Eq. 9), which is also MeanFlow's average-velocity identity. Detach the result
    (``dF_dt`` from a ``Derivative`` already is): it is a stop-gradient target."""
    return v_t - expand_like(t - r, v_t) * dF_dt


def transition_coefficients_dt(path: ProbabilityPath, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(A, B, dA/dt, dB/dt)`` of the transition ``x_r = A_{t,r} x_t + B_{t,r} F`` at fixed ``r``
    (docs/math.md sections 2-3). genflow's own helper, no paper equation of its own.

    ``dA/dt`` comes from forward-mode AD through the path's own (elementwise, analytic)
    ``transition_coefficients``, which is exact.
    """
    with fwAD.dual_level():
        A, B, dB_dt = path.transition_coefficients(fwAD.make_dual(t, torch.ones_like(t)), r)
        dA_dt = fwAD.unpack_dual(A).tangent
        A, B, dB_dt = (fwAD.unpack_dual(c).primal for c in (A, B, dB_dt))
    if dA_dt is None:  # A does not depend on t (e.g. the linear path, A = 1)
        dA_dt = torch.zeros_like(t)
    return A, B, dA_dt, dB_dt


def transition_target(path: ProbabilityPath, x_t: Tensor, v_t: Tensor, dF_dt: Tensor, t: Tensor, r: Tensor) -> Tensor:
    """The regression target ``F_hat`` of TiM on any path, shaped like ``x_t``.

    From ``d/dt (A x_t + B F) = 0`` along ``dx_t/dt = v_t`` (the state-transition identity of
    arXiv 2509.04394, docs/math.md section 3; its equation number is not cited because it has not
    been checked against the paper): ``F_hat = -(dA/dt x_t + A v_t + B sg(dF/dt)) / (dB/dt)``.
    On the linear path (``A = 1``, ``B = -(t - r)``, ``dB/dt = -1``) it is :func:`interval_target`,
    arXiv 2509.04394, Eq. 9.
    """
    A, B, dA_dt, dB_dt = (expand_like(c, x_t) for c in transition_coefficients_dt(path, t, r))
    return -(dA_dt * x_t + A * v_t + B * dF_dt) / dB_dt


# --------------------------------------------------------------------------------------------
# Weighting and reduction
# --------------------------------------------------------------------------------------------


def interval_weight(t: Tensor, r: Tensor, *, weighting: Weighting, sigma_d: float = 1.0) -> Tensor:
    """``w(t, r) = (sigma_d + g(t) - g(r))^(-1/2)``, ``(N,)``, docs/math.md section 6: TiM's interval
    weighting (arXiv 2509.04394's loss weighting, ``g = tan``; its equation number is not cited
    because it has not been checked against the paper) with ``g = tan`` (``"tangent"``); the
    alternatives ``g(t) = t`` (``"linear"``) and ``g(t) = t / (1 - t)`` (``"odds"``) are options of
    the reference implementation; ``w = 1`` for ``"constant"`` and on rows with ``r = t``."""
    if weighting == "constant":
        return torch.ones_like(t)
    if weighting == "tangent":
        gap = torch.tan(t) - torch.tan(r)
    elif weighting == "linear":
        gap = t - r
    elif weighting == "odds":
        gap = t / (1 - t) - r / (1 - r)
    else:
        raise ValueError(f"unknown weighting {weighting!r}; allowed: {', '.join(WEIGHTINGS)}")
    w = (sigma_d + gap).rsqrt()
    return torch.where(t == r, torch.ones_like(w), w)


def adaptive_weight(L: Tensor, *, eps: float, power: float = 1.0) -> Tensor:
    """``1 / (sg(L) + eps)^power``, ``(N,)``: adaptive loss weighting, docs/math.md section 6 (no
    paper equation number cited; the reference implementation uses ``power = 1``; MeanFlow's ``p``
    is ``power``, 0 turns it off)."""
    return (L.detach() + eps).pow(-power)


def row_mean(x: Tensor) -> Tensor:
    """Mean over every axis but the first: per-sample losses ``(N,)`` from ``(N, ...)`` errors
    (genflow's own utility, docs/math.md section 6)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def rows_finite(x: Tensor) -> Tensor:
    """``(N,)`` bool: the rows of ``(N, ...)`` whose entries are all finite (mask the others out;
    genflow's own, docs/math.md section 6)."""
    return torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
