"""The ``tim`` objective: regress ``F_theta(x_t, t, r)`` onto the state-transition target (TIM.md s3-s6)."""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
from attrs import validators
from torch import Tensor
from torch.autograd import forward_ad as fwAD

from genflow.config.domains import DomainError, finite, non_negative, positive, unit
from genflow.guidance import drop_labels, has_condition, null_condition
from genflow.interfaces import (
    Backbone,
    Batch,
    Condition,
    DataSpec,
    Derivative,
    Objective,
    ObjectiveOutput,
    Path,
    TimeFunction,
    expand_like,
)
from genflow.timesteps import logit_normal, resolution_shift, shift_factor
from genflow_tim.derivatives import replayed_rng, rng_snapshot
from genflow_tim.sampler import INTERVAL

Weighting = Literal["tangent", "linear", "odds", "constant"]
DiffusionTime = Literal["max", "single"]
WEIGHTINGS = ("tangent", "linear", "odds", "constant")

_unit = unit()


@attrs.frozen(kw_only=True)
class TimObjectiveConfig:
    """Options of the ``tim`` objective. Times and weightings are the reference's class-conditional
    settings; three loss defaults differ from it (``adaptive_groups = 8``, ``directional = False``,
    ``diffusion_t = "single"``): on toy2d and shapes the reference's loss made quality fall with
    more sampling steps (docs/results.md); ``REFERENCE_LOSS`` restores it. The single draw of the
    ``r = t`` rows centres at ``diffusion_p_mean = -1.2``, nearer the data than ``p_mean``: TiM's
    velocity (what many-step sampling integrates) was weakest near the data (docs/results.md s3b).
    ``diffusion_ratio = 0.7`` (the reference: 0.5): fewer rows need ``dF/dt``, so a step is cheaper
    and the same compute trains more of them, which improved many-step quality on toy2d and
    shapes at the same one-step quality (docs/results.md s0); ``REFERENCE_MIXTURE`` restores it.

    Times: ``t, r`` = max / min of two logit-normal draws ``sigmoid(N(p_mean, p_std))``; a fraction
    ``diffusion_ratio`` of each batch gets ``r = t``, ``consistency_ratio`` gets ``r = 0``
    (TIM.md s5). ``diffusion_t``: the ``t`` of the ``r = t`` rows, ``"max"`` of the two draws (the
    reference) or a ``"single"`` draw from ``logit-normal(diffusion_p_mean, p_std)`` (as flow
    matching samples its ``t``; a lower mean puts more rows near the data).
    ``base_resolution`` > 0 turns on the resolution shift of ``t`` and ``r``.
    Loss (TIM.md s6): interval ``weighting`` with ``sigma_d``; ``adaptive`` weighting
    ``1 / (sg(L) + adaptive_eps)`` per sample (``adaptive_groups = 0``, the reference) or
    ``1 / (mean sg(L) of the row's group + adaptive_eps)`` with ``adaptive_groups = k`` groups of
    rows of similar ``t`` (per kind: ``r = t`` rows and interval rows), which estimates
    ``E[L | t]`` instead of using the sample's own loss; ``diagonal_groups`` > 0 sets the ``r = t``
    rows' count apart (1: their mean loss, flow matching's relative weighting over ``t``).
    ``directional`` adds ``1 - cos(F, F_hat)`` over channels.
    ``label_dropout``: probability of the null class. ``guidance_target`` enables the
    guidance-enhanced target ``v + guidance_target_scale (F_c - F_u)`` for ``t / t_max`` inside
    the closed ``guidance_target_interval``.
    """

    p_mean: float = attrs.field(default=-0.4, validator=finite())
    p_std: float = attrs.field(default=1.0, validator=positive(integer=False))
    diffusion_ratio: float = attrs.field(default=0.7, validator=_unit)
    consistency_ratio: float = attrs.field(default=0.1, validator=_unit)
    diffusion_t: DiffusionTime = attrs.field(default="single", validator=validators.in_(("max", "single")))
    diffusion_p_mean: float = attrs.field(default=-1.2, validator=finite())
    weighting: Weighting = attrs.field(default="tangent", validator=validators.in_(WEIGHTINGS))
    sigma_d: float = attrs.field(default=1.0, validator=positive(integer=False))
    adaptive: bool = True
    adaptive_eps: float = attrs.field(default=1e-5, validator=positive(integer=False))
    adaptive_groups: int = attrs.field(default=8, validator=non_negative())
    diagonal_groups: int = attrs.field(default=0, validator=non_negative())
    directional: bool = False
    label_dropout: float = attrs.field(default=0.1, validator=_unit)
    guidance_target: bool = False
    guidance_target_scale: float = attrs.field(default=0.75, validator=finite())
    guidance_target_interval: tuple[float, float] = attrs.field(default=(0.3, 0.8), validator=INTERVAL)
    base_resolution: int = attrs.field(default=0, validator=non_negative())

    def __attrs_post_init__(self) -> None:
        if self.diffusion_ratio + self.consistency_ratio > 1:  # the two row groups share one batch
            raise DomainError("consistency_ratio", self.consistency_ratio,
                              f"a number <= 1 - diffusion_ratio = {1 - self.diffusion_ratio:g} (the ratios share "
                              "the batch)")


#: The loss settings of the reference implementation (TIM.md s5-s6), as config overrides.
REFERENCE_LOSS = {"adaptive": True, "adaptive_groups": 0, "directional": True, "diffusion_t": "max"}
#: The batch mixture of the reference implementation (TIM.md s5), as config overrides.
REFERENCE_MIXTURE = {"diffusion_ratio": 0.5, "consistency_ratio": 0.1}


# --------------------------------------------------------------------------------------------
# Building blocks (each usable and tested on its own)
# --------------------------------------------------------------------------------------------


def bind(backbone: Backbone, r: Tensor, cond: Condition) -> TimeFunction:
    """``fn(x, t) = backbone(x, t, r, cond)`` for derivative providers (``interfaces.TimeFunction``).

    ``fn`` accepts ``k``-fold tiled batches (``k N`` rows): ``r`` and ``cond`` are tiled to match.
    """
    n = r.shape[0]

    def fn(x: Tensor, t: Tensor) -> Tensor:
        k, rest = divmod(x.shape[0], n)
        if rest or k < 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"TimeFunction got {x.shape[0]} rows, not a multiple of its batch of {n}")
        if k == 1:
            return backbone(x, t, r, cond)
        return backbone(x, t, torch.cat([r] * k), cond.tile(k))

    return fn


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def sample_times(
    config: TimObjectiveConfig, n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Unit times ``(t, r)``, each ``(n,)`` in ``[0, 1)`` with ``t >= r`` (TIM.md s5, steps 1-3).

    Exactly ``round(n * diffusion_ratio)`` rows get ``r = t`` and ``round(n * consistency_ratio)``
    get ``r = 0``, on rows chosen by a random permutation (a fixed count keeps the derivative's
    batch size constant from step to step).
    """
    device = generator.device
    t1 = logit_normal(n, config.p_mean, config.p_std, generator=generator, device=device, dtype=dtype)
    t2 = logit_normal(n, config.p_mean, config.p_std, generator=generator, device=device, dtype=dtype)
    t, r = torch.maximum(t1, t2), torch.minimum(t1, t2)
    perm = torch.randperm(n, generator=generator, device=device)
    n_fm, n_cm = _round(n * config.diffusion_ratio), _round(n * config.consistency_ratio)
    fm_rows, cm_rows = perm[:n_fm], perm[n_fm : n_fm + n_cm]
    if config.diffusion_t == "single":  # one draw, as flow matching samples t
        if config.diffusion_p_mean != config.p_mean:  # else the first draw serves
            t1 = logit_normal(n, config.diffusion_p_mean, config.p_std, generator=generator, device=device, dtype=dtype)
        t[fm_rows] = t1[fm_rows]
    r[fm_rows] = t[fm_rows]  # flow-matching rows
    r.index_fill_(0, cm_rows, 0.0)  # one-step rows (``r[rows] = 0.0`` would copy the 0 from the host)
    return t, r


def interval_weight(t: Tensor, r: Tensor, *, weighting: Weighting, sigma_d: float = 1.0) -> Tensor:
    """``w(t, r)`` of TIM.md s6, ``(N,)``; ``w = 1`` on rows with ``r = t``."""
    if weighting == "constant":
        return torch.ones_like(t)
    if weighting == "tangent":
        gap = torch.tan(t) - torch.tan(r)
    elif weighting == "linear":
        gap = t - r
    elif weighting == "odds":
        gap = t / (1 - t) - r / (1 - r)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    w = (sigma_d + gap).rsqrt()  # (sigma_d + g(t) - g(r))^(-1/2)
    return torch.where(t == r, torch.ones_like(w), w)


def transition_coefficients_dt(path: Path, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(A, B, dA/dt, dB/dt)`` of ``x_r = A_{t,r} x_t + B_{t,r} F`` at fixed ``r``.

    ``dA/dt`` is not part of the ``Path`` interface: it comes from forward-mode AD through the
    path's own (elementwise, analytic) ``transition_coefficients``, which is exact.
    """
    with fwAD.dual_level():
        A, B, dB_dt = path.transition_coefficients(fwAD.make_dual(t, torch.ones_like(t)), r)
        dA_dt = fwAD.unpack_dual(A).tangent
        A, B, dB_dt = (fwAD.unpack_dual(c).primal for c in (A, B, dB_dt))
    if dA_dt is None:  # A does not depend on t (e.g. the linear path, A = 1)
        dA_dt = torch.zeros_like(t)
    return A, B, dA_dt, dB_dt


def transition_target(path: Path, x_t: Tensor, v_t: Tensor, dF_dt: Tensor, t: Tensor, r: Tensor) -> Tensor:
    """The regression target ``F_hat`` of TIM.md s3, general form, shaped like ``x_t``.

    From ``d/dt (A x_t + B F) = 0`` along the trajectory ``dx_t/dt = v_t``:
    ``F_hat = -(dA/dt x_t + A v_t + B sg(dF/dt)) / (dB/dt)``. Linear path (``A = 1``,
    ``B = -(t - r)``, ``dB/dt = -1``): ``F_hat = v_t - (t - r) sg(dF/dt)`` (paper Eq. 9). Wherever
    the transition is exact on conditional trajectories (linear, TrigFlow) this equals the form
    ``alpha_hat x + sigma_hat z + (B / B') (alpha_hat' x + sigma_hat' z - dF/dt)`` of TIM.md s3.
    With the marginal velocity ``u`` in place of ``v_t`` it is the identity itself (TIM.md s8).
    """
    A, B, dA_dt, dB_dt = (expand_like(c, x_t) for c in transition_coefficients_dt(path, t, r))
    return -(dA_dt * x_t + A * v_t + B * dF_dt) / dB_dt


def grouped_mean(L: Tensor, t: Tensor, r: Tensor, groups: int | tuple[int, int], keep: Tensor) -> Tensor:
    """Each kept row's ``L`` replaced by the mean over its group, ``(N,)``: kept rows split by kind
    (``r = t`` or not), sorted by ``t`` (stable) and cut into ``min(groups, rows of the kind)``
    near-equal groups per kind, the larger ones first as ``Tensor.tensor_split`` cuts (an estimate
    of ``E[L | t]`` that hardly depends on the row's own sample). Other rows keep ``L``.
    ``groups``: one count for both kinds, or ``(r = t rows, interval rows)``.

    One vectorised pass with fixed shapes and no host synchronisation (it runs every step).
    """
    diagonal, interval = (groups, groups) if isinstance(groups, int) else groups
    groups = max(diagonal, interval)
    n = L.shape[0]
    kind = torch.where(keep, (t != r).long(), 2)  # 0: r = t, 1: interval, 2: not kept
    by_t = torch.sort(t, stable=True).indices
    order = by_t[torch.sort(kind[by_t], stable=True).indices]  # sorted by (kind, t)
    kinds = torch.arange(3, device=L.device)
    count = (kind.unsqueeze(1) == kinds).sum(0)  # rows per kind (bincount would sync on CUDA)
    sorted_kind = kind[order]
    size = count[sorted_kind]  # the row's kind's row count, >= 1
    rank = torch.arange(n, device=L.device) - (count.cumsum(0) - count)[sorted_kind]
    kind_groups = torch.where(sorted_kind == 0, diagonal, torch.where(sorted_kind == 1, interval, 1))
    split = torch.minimum(size, kind_groups)  # tensor_split(min(groups, size)): `extra` groups of q + 1, then q
    q, extra = size // split, size % split
    big = extra * (q + 1)
    group = torch.where(rank < big, rank // (q + 1), extra + (rank - big) // q)
    gid = sorted_kind * groups + group
    values = L[order]
    sums = torch.zeros(3 * groups, dtype=L.dtype, device=L.device).index_add_(0, gid, values)
    rows = torch.zeros(3 * groups, dtype=L.dtype, device=L.device).index_add_(0, gid, torch.ones_like(values))
    means = (sums / rows.clamp(min=1))[gid]
    return torch.empty_like(L).index_copy_(0, order, torch.where(sorted_kind < 2, means, values))


def cosine_similarity(a: Tensor, b: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``torch.cosine_similarity``: ``a . b / (max(|a|, eps) max(|b|, eps))`` along ``dim``, written
    with sums of squares (on CPUs ATen's vector norm over a non-last axis is ~80x slower than this,
    which made the directional loss ~9% of a demo training step)."""
    norm_a = a.square().sum(dim).clamp_min(eps**2).sqrt()  # clamp before sqrt: finite gradients at 0
    norm_b = b.square().sum(dim).clamp_min(eps**2).sqrt()
    return (a * b).sum(dim) / (norm_a * norm_b)


def _rows_finite(x: Tensor) -> Tensor:
    return torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)


def _row_mean(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------


class TimObjective(Objective):
    """Transition-model training (TIM.md s3-s6): ``(t, r)`` sampling, noising, the transition target
    with ``dF/dt`` from a pluggable ``Derivative`` on the ``t != r`` rows, and the weighted loss.

    Non-finite per-sample losses (a diverging derivative, an overflowing forward) are masked out of
    the loss and counted in ``logs["nonfinite"]``; when no row is finite the loss is NaN, so the
    trainer's non-finite guard skips the step instead of stepping on a silently smaller batch.

    The guidance-enhanced target (off by default) uses the *current* backbone under ``no_grad`` as
    its teacher; the reference implementation uses the EMA weights instead.
    """

    def __init__(
        self, config: TimObjectiveConfig, *, path: Path, derivative: Derivative, spec: DataSpec
    ) -> None:
        self.config = config
        self.path = path
        self.derivative = derivative
        self.spec = spec
        self.shift = shift_factor(spec.shape, config.base_resolution)

    def loss(self, backbone: Backbone, batch: Batch, *, generator: torch.Generator) -> ObjectiveOutput:
        x, cond = batch.x, batch.cond
        t, r = self.times(x.shape[0], generator=generator, dtype=x.dtype)
        t, r = t.to(x.device), r.to(x.device)
        z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        cond = self.drop_labels(cond, generator=generator)
        x_t, v_t = self.path.interpolate(x, z, t), self.path.velocity(x, z, t)  # TIM.md s1
        if self.config.guidance_target:
            v_t = self.guided_velocity(backbone, x_t, v_t, t, cond)
        rows = self.interval_rows(t, r)
        if self.derivative.uses_output:  # e.g. one-sided dde: the main pass first, reused
            F, dF_dt = self.forward_then_derivative(backbone, x_t, t, r, v_t, cond, rows)
        else:
            # the derivative runs first: providers keep the RNG state, so their passes see the same
            # dropout state as the main pass below
            dF_dt = self.time_derivative(backbone, x_t, t, r, v_t, cond, rows=rows)
            F = backbone(x_t, t, r, cond)  # (N, ...)
        F_hat = transition_target(self.path, x_t, v_t, dF_dt, t, r).detach()  # TIM.md Eq. 9
        return self.weighted_loss(F, F_hat, t, r)

    def times(self, n: int, *, generator: torch.Generator, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Path times ``(t, r)`` (``(n,)`` each): unit times, resolution shift, scaled to ``t_max``."""
        time_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        t, r = sample_times(self.config, n, generator=generator, dtype=time_dtype)
        t, r = resolution_shift(t, self.shift), resolution_shift(r, self.shift)  # TIM.md s5, step 4
        return t * self.path.t_max, r * self.path.t_max

    def drop_labels(self, cond: Condition, *, generator: torch.Generator) -> Condition:
        """Replace each label by the null class ``spec.num_classes`` with probability ``label_dropout``."""
        return drop_labels(cond, self.config.label_dropout, self.spec, generator)

    def guided_velocity(
        self, backbone: Backbone, x_t: Tensor, v_t: Tensor, t: Tensor, cond: Condition
    ) -> Tensor:
        """``v <- v + scale (F(x_t, t, t | y) - F(x_t, t, t | null))`` inside the interval (TIM.md s6).

        The teacher is the current backbone under ``no_grad`` (the reference uses its EMA). Both
        branches run as one ``2N`` batch; rows without a condition (the null label, an empty or
        dropped caption) are left unchanged.
        """
        guided = has_condition(cond, self.spec)
        if guided is None:
            return v_t
        lo, hi = self.config.guidance_target_interval
        t_unit = t / self.path.t_max
        rows = ((t_unit >= lo) & (t_unit <= hi) & guided.to(t.device)).nonzero().squeeze(1)
        if rows.numel() == 0:
            return v_t
        c = cond.index(rows)
        null = null_condition(c, self.spec)
        with torch.no_grad():
            x2, t2 = torch.cat([x_t[rows]] * 2), torch.cat([t[rows]] * 2)
            F_c, F_u = backbone(x2, t2, t2, Condition.cat([c, null])).to(v_t.dtype).chunk(2)
        v_t = v_t.clone()
        v_t[rows] += self.config.guidance_target_scale * (F_c - F_u)
        return v_t

    def interval_rows(self, t: Tensor, r: Tensor) -> Tensor:
        """The ``t != r`` rows, ascending, as ``(t != r).nonzero()`` but without its host sync:
        ``sample_times`` gives ``r = t`` to exactly ``round(n diffusion_ratio)`` rows, so the
        count is known on the host (a coincidental ``t = r`` row beyond those gets a derivative
        that its zero-length interval ignores)."""
        n = t.shape[0]
        interval = n - _round(n * self.config.diffusion_ratio)
        return torch.sort((t == r).to(torch.int8), stable=True).indices[:interval]

    def time_derivative(
        self, backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, dx_dt: Tensor, cond: Condition,
        F_t: Tensor | None = None, rows: Tensor | None = None,
    ) -> Tensor:
        """``sg(dF/dt)`` along ``(dx_dt, 1, 0)`` on the ``t != r`` rows only; zeros on ``r = t`` rows.

        ``F_t``: the main pass's output, handed to providers that reuse it (``uses_output``).
        ``rows``: the ``t != r`` rows when known (``interval_rows``), else found here.
        """
        dF_dt = torch.zeros_like(x_t)
        rows = (t != r).nonzero().squeeze(1) if rows is None else rows
        if rows.numel() == 0:
            return dF_dt
        fn = bind(backbone, r[rows], cond.index(rows))
        reuse = {} if F_t is None else {"F_t": F_t.detach()[rows]}
        dF_dt[rows] = self.derivative.time_derivative(
            fn, x_t[rows], t[rows], dx_dt[rows], t_min=r[rows], t_max=self.path.t_max, **reuse
        ).to(x_t.dtype)
        return dF_dt.detach()

    def forward_then_derivative(
        self, backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, dx_dt: Tensor, cond: Condition,
        rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(F, sg(dF/dt))`` for providers that reuse the main pass: ``F`` (with gradients) first,
        then the provider's passes from the RNG state that pass started from (same dropout masks)."""
        snapshot = rng_snapshot(x_t.device)
        F = backbone(x_t, t, r, cond)  # (N, ...)
        with replayed_rng(x_t.device, snapshot):
            dF_dt = self.time_derivative(backbone, x_t, t, r, dx_dt, cond, F_t=F, rows=rows)
        return F, dF_dt

    def per_sample_loss(self, F: Tensor, F_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(L, mse, cos)`` per sample, ``(N,)``: ``L = mse + cos`` with ``cos = mean(1 - cos(F, F_hat))``
        over the channel axis when ``directional`` (else 0), TIM.md s6."""
        mse = _row_mean((F - F_hat).square())
        if not self.config.directional:
            return mse, mse, torch.zeros_like(mse)
        cos = _row_mean(1 - cosine_similarity(F, F_hat, dim=1))
        return mse + cos, mse, cos

    def weighted_loss(self, F: Tensor, F_hat: Tensor, t: Tensor, r: Tensor) -> ObjectiveOutput:
        """Interval x adaptive weighted mean over the finite rows (TIM.md s6)."""
        F = F.to(torch.promote_types(F.dtype, torch.float32))
        F_hat = F_hat.to(F.dtype)
        w = interval_weight(t, r, weighting=self.config.weighting, sigma_d=self.config.sigma_d).to(F.dtype)
        finite = _rows_finite(F.detach()) & _rows_finite(F_hat) & torch.isfinite(w)
        keep = expand_like(finite, F).bool()
        # zero the bad rows *before* the loss: a NaN there would turn their zero gradient into NaN
        L, mse, cos = self.per_sample_loss(torch.where(keep, F, 0.0), torch.where(keep, F_hat, 0.0))
        weight = torch.where(finite, w, 0.0)
        if self.config.adaptive:
            scale = L.detach()
            if self.config.adaptive_groups:
                groups = (self.config.diagonal_groups or self.config.adaptive_groups, self.config.adaptive_groups)
                scale = grouped_mean(scale, t, r, groups, finite)
            weight = weight / (scale + self.config.adaptive_eps)  # 1 / (sg(L) + eps)
        count = finite.sum()
        loss = (weight * L * finite).sum() / count  # 0 / 0 = NaN when no row is finite
        raw, _, _ = self.per_sample_loss(F.detach(), F_hat)
        logs = {
            "mse": (mse.detach() * finite).sum() / count,
            "cos": (cos.detach() * finite).sum() / count,
            "nonfinite": (~finite).sum().to(torch.float32),
        }
        return ObjectiveOutput(loss=loss, per_sample=raw, logs=logs)


def build(config: TimObjectiveConfig, *, path: Path, derivative: Derivative, spec: DataSpec) -> TimObjective:
    """Registry factory of the ``tim`` objective."""
    return TimObjective(config, path=path, derivative=derivative, spec=spec)
