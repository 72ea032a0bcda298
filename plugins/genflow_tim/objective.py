"""The ``tim`` objective: regress ``F_theta(x_t, t, r)`` onto the state-transition target (docs/math.md s3-s6)."""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs
import torch
from attrs import validators
from torch import Tensor

from genflow.config.domains import DomainError, finite, non_negative, one_of, positive, text, unit
from genflow.errors import ConfigError, GenflowError
from genflow.guidance import drop_labels, has_condition, null_condition
from genflow.interfaces import (
    Backbone,
    Batch,
    Condition,
    DataSpec,
    Derivative,
    Objective,
    ObjectiveOutput,
    ProbabilityPath,
    expand_like,
)
from genflow.objectives import (
    WEIGHTINGS,
    Weighting,
    interval_weight,
    row_mean,
    rows_finite,
    split_rows,
    transition_target,
)
from genflow.timesteps import logit_normal, resolution_shift, shift_factor
from genflow_tim.repa import ENCODERS, RepresentationAlignment, build_encoder
from genflow_tim.sampler import INTERVAL

DiffusionTime = Literal["max", "single"]
GuidanceTargetVariant = Literal["official", "guided-tangent"]
GUIDANCE_TARGET_VARIANTS = ("official", "guided-tangent")

_unit = unit()


@attrs.frozen(kw_only=True)
class TimExperimental:
    """Ablation knobs of the ``tim`` objective, the table ``[objective.experimental]``: no preset sets
    them; the experiments of ``benchmarks/science`` and docs/parity.md do (docs/config.md).

    ``diagonal_groups`` > 0 sets the count of adaptive groups of the ``r = t`` rows apart from
    ``adaptive_groups`` (1: their mean loss, flow matching's relative weighting over ``t``).
    ``adaptive_eps``: the ``eps`` of the adaptive weight ``1 / (sg(L) + eps)``.
    ``guidance_target_variant``: ``"official"`` (the official TiM code) takes ``dF/dt`` along the
    plain velocity ``v`` and computes ``F_c`` with the batch's true condition, so rows whose label
    was dropped are guided too; ``"guided-tangent"`` takes ``dF/dt`` along the guided velocity (the
    tangent of the trajectory the target describes) and leaves dropped rows unguided, which is
    preferable when the model is still sampled with classifier-free guidance: its null-class rows
    keep learning the plain unconditional transition that the guidance's unconditional branch needs
    (docs/parity.md).
    """

    diagonal_groups: int = attrs.field(default=0, validator=non_negative())
    adaptive_eps: float = attrs.field(default=1e-5, validator=positive(integer=False))
    guidance_target_variant: GuidanceTargetVariant = attrs.field(
        default="official", validator=validators.in_(GUIDANCE_TARGET_VARIANTS)
    )


@attrs.frozen(kw_only=True)
class TimObjectiveConfig:
    """Options of the ``tim`` objective. Times and weightings are the reference's class-conditional
    settings. Four defaults differ from the reference: ``adaptive_groups = 8``, ``directional =
    False`` and ``diffusion_t = "single"`` at ``diffusion_p_mean = -1.2`` (the reference's loss
    biases the velocity of low-dimensional samples, docs/results.md section 2; ``REFERENCE_LOSS``
    restores it), and ``diffusion_ratio = 0.7`` (fewer rows need ``dF/dt``, so a step is cheaper;
    docs/results.md section 1; ``REFERENCE_MIXTURE`` restores the reference's 0.5).

    Times: ``t, r`` = max / min of two logit-normal draws ``sigmoid(N(p_mean, p_std))``; a fraction
    ``diffusion_ratio`` of each batch gets ``r = t``, ``consistency_ratio`` gets ``r = 0``
    (docs/math.md s5). ``diffusion_t``: the ``t`` of the ``r = t`` rows, ``"max"`` of the two draws (the
    reference) or a ``"single"`` draw from ``logit-normal(diffusion_p_mean, p_std)`` (as flow
    matching samples its ``t``; a lower mean puts more rows near the data).
    ``base_resolution`` > 0 turns on the resolution shift of ``t`` and ``r``.
    Loss (docs/math.md s6): interval ``weighting`` with ``sigma_d``; ``adaptive`` weighting
    ``1 / (sg(L) + eps)`` per sample (``adaptive_groups = 0``, the reference) or
    ``1 / (mean sg(L) of the row's group + eps)`` with ``adaptive_groups = k`` groups of
    rows of similar ``t`` (per kind: ``r = t`` rows and interval rows), which estimates
    ``E[L | t]`` instead of using the sample's own loss.
    ``directional`` adds ``1 - cos(F, F_hat)`` over channels.
    ``label_dropout``: probability of the null class. ``guidance_target`` enables the
    guidance-enhanced target ``v + guidance_target_scale (F_c - F_u)`` for ``t / t_max`` inside
    the closed ``guidance_target_interval`` (the official TiM target). ``experimental``
    (:class:`TimExperimental`) holds the ablation knobs.
    ``repa_weight`` > 0 adds representation alignment (:mod:`genflow_tim.repa`) with that weight:
    the backbone's projector (``backbone.projector_out``) against the frozen ``repa_encoder``
    (``"random"``, ``"dinov2"`` from ``repa_encoder_path``, ``"radio"`` from ``repa_encoder_repo``
    and ``repa_encoder_path``) on the clean batch, decoded to pixels by the autoencoder
    ``repa_decoder`` (``"identity"``: the data are pixels) with ``repa_decoder_pretrained``.
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
    adaptive_groups: int = attrs.field(default=8, validator=non_negative())
    directional: bool = False
    label_dropout: float = attrs.field(default=0.1, validator=_unit)
    guidance_target: bool = False
    guidance_target_scale: float = attrs.field(default=0.75, validator=finite())
    guidance_target_interval: tuple[float, float] = attrs.field(default=(0.3, 0.8), validator=INTERVAL)
    base_resolution: int = attrs.field(default=0, validator=non_negative())
    repa_weight: float = attrs.field(default=0.0, validator=non_negative(integer=False))
    repa_encoder: str = attrs.field(default="random", validator=one_of(ENCODERS))
    repa_encoder_path: str = attrs.field(default="", validator=text(empty=True))
    repa_encoder_repo: str = attrs.field(default="", validator=text(empty=True))
    repa_decoder: str = attrs.field(default="identity", validator=text())
    repa_decoder_pretrained: str = attrs.field(default="", validator=text(empty=True))
    experimental: TimExperimental = TimExperimental()

    def __attrs_post_init__(self) -> None:
        if self.diffusion_ratio + self.consistency_ratio > 1:  # the two row groups share one batch
            raise DomainError(("diffusion_ratio", "consistency_ratio"), self.diffusion_ratio + self.consistency_ratio,
                              "a sum <= 1 (the two ratios share the batch)")


#: The loss settings of the reference implementation (docs/math.md s5-s6), as config overrides.
REFERENCE_LOSS = {"adaptive": True, "adaptive_groups": 0, "directional": True, "diffusion_t": "max"}
#: The batch mixture of the reference implementation (docs/math.md s5), as config overrides.
REFERENCE_MIXTURE = {"diffusion_ratio": 0.5, "consistency_ratio": 0.1}


# --------------------------------------------------------------------------------------------
# Building blocks (each usable and tested on its own)
# --------------------------------------------------------------------------------------------


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def sample_times(
    config: TimObjectiveConfig, n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Unit times ``(t, r)``, each ``(n,)`` in ``[0, 1)`` with ``t >= r`` (docs/math.md s5, steps 1-3).

    Exactly ``round(n * diffusion_ratio)`` rows get ``r = t`` and ``round(n * consistency_ratio)``
    get ``r = 0``, on rows chosen by a random permutation (a fixed count keeps the derivative's
    batch size constant from step to step).
    """
    device = generator.device
    t1 = logit_normal(n, config.p_mean, config.p_std, generator=generator, device=device, dtype=dtype)
    t2 = logit_normal(n, config.p_mean, config.p_std, generator=generator, device=device, dtype=dtype)
    t, r = torch.maximum(t1, t2), torch.minimum(t1, t2)
    fm_rows, cm_rows = split_rows(n, (config.diffusion_ratio, config.consistency_ratio), generator=generator)
    if config.diffusion_t == "single":  # one draw, as flow matching samples t
        if config.diffusion_p_mean != config.p_mean:  # else the first draw serves
            t1 = logit_normal(n, config.diffusion_p_mean, config.p_std, generator=generator, device=device, dtype=dtype)
        t[fm_rows] = t1[fm_rows]
    r[fm_rows] = t[fm_rows]  # flow-matching rows
    r.index_fill_(0, cm_rows, 0.0)  # one-step rows (``r[rows] = 0.0`` would copy the 0 from the host)
    return t, r


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
    with sums of squares (on CPUs ATen's vector norm over a non-last axis is far slower than this)."""
    norm_a = a.square().sum(dim).clamp_min(eps**2).sqrt()  # clamp before sqrt: finite gradients at 0
    norm_b = b.square().sum(dim).clamp_min(eps**2).sqrt()
    return (a * b).sum(dim) / (norm_a * norm_b)


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------


class TimObjective(Objective):
    """Transition-model training (docs/math.md s3-s6): ``(t, r)`` sampling, noising, the transition target
    with ``dF/dt`` from a pluggable ``Derivative`` on the ``t != r`` rows, and the weighted loss.

    Non-finite per-sample losses (a diverging derivative, an overflowing forward) are masked out of
    the loss and counted in ``logs["nonfinite"]``; when no row is finite the loss is NaN, so the
    trainer's non-finite guard skips the step instead of stepping on a silently smaller batch.

    The guidance-enhanced target (off by default) uses the *current* backbone under ``no_grad`` as
    its teacher; the reference implementation uses the EMA weights instead.
    """

    def __init__(
        self, config: TimObjectiveConfig, *, path: ProbabilityPath, derivative: Derivative, spec: DataSpec
    ) -> None:
        self.config = config
        self.path = path
        self.derivative = derivative
        self.spec = spec
        self.shift = shift_factor(spec.shape, config.base_resolution)
        self.repa: RepresentationAlignment | None = None

    def check_backbone(self, backbone: Backbone, *, distributed: bool) -> None:
        """With ``repa_weight`` > 0: the backbone needs a projector, and the encoder loads here
        (before training) so a missing file or package is one line."""
        if self.config.repa_weight <= 0:
            return
        projector = getattr(backbone, "projector", None)
        if projector is None:
            raise GenflowError("objective.repa_weight > 0 needs a backbone with a representation projector "
                               "(tim-dit with backbone.projector_out > 0 and backbone.projector_depth)")
        self.repa = self.build_repa(int(projector[-1].out_features))

    def build_repa(self, dim: int) -> RepresentationAlignment:
        """The REPA loss with ``repa_encoder`` (the random one ``dim`` wide) and the decoder."""
        c = self.config
        encoder = build_encoder(c.repa_encoder, dim=dim, path=c.repa_encoder_path, repo=c.repa_encoder_repo)
        decoder = None
        if c.repa_decoder != "identity":
            from genflow.data.autoencoders import build_builtin

            options = {"pretrained": c.repa_decoder_pretrained} if c.repa_decoder_pretrained else {}
            autoencoder = build_builtin(c.repa_decoder, options)

            def decoder(x: Tensor) -> Tensor:
                shift, scale = (torch.tensor(v, dtype=x.dtype, device=x.device) for v in autoencoder.shift_scale())
                return autoencoder.decode(x / scale.view(-1, 1, 1) + shift.view(-1, 1, 1))

        return RepresentationAlignment(encoder, decoder=decoder)

    def main_pass(self, backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor,
                  cond: Condition) -> tuple[Tensor, Tensor | None]:
        """``F`` (with gradients) and, with REPA, the projector's reading ``h_proj``."""
        if self.config.repa_weight <= 0:
            return backbone(x_t, t, r, cond), None
        F, h_proj = backbone(x_t, t, r, cond, features=True)  # type: ignore[call-arg]
        return F, h_proj

    def loss(self, backbone: Backbone, batch: Batch, *, generator: torch.Generator) -> ObjectiveOutput:
        x, cond = batch.x, batch.cond
        t, r = self.times(x.shape[0], generator=generator, dtype=x.dtype)
        t, r = t.to(x.device), r.to(x.device)
        z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        true_cond, cond = cond, self.drop_labels(cond, generator=generator)
        x_t, v_t = self.path.interpolate(x, z, t), self.path.velocity(x, z, t)  # docs/math.md s1
        v_hat, dx_dt = self.target_velocity(backbone, x_t, v_t, t, cond, true_cond)
        rows = self.interval_rows(t, r)
        # the main pass F (N, ...), sg(dF/dt) on the t != r rows in the order the provider needs,
        # and with REPA the projector's reading h_proj
        F, dF_dt, h_proj = self.forward_then_derivative(backbone, x_t, t, r, dx_dt, cond, rows)
        F_hat = transition_target(self.path, x_t, v_hat, dF_dt, t, r).detach()  # arXiv 2509.04394, Eq. 9
        out = self.weighted_loss(F, F_hat, t, r)
        return out if h_proj is None else self.add_alignment(out, backbone, h_proj, x)

    def add_alignment(self, out: ObjectiveOutput, backbone: Backbone, h_proj: Tensor, x: Tensor) -> ObjectiveOutput:
        """``loss + repa_weight L_repa`` (:mod:`genflow_tim.repa`), ``L_repa`` logged as ``repa``."""
        if self.repa is None:  # objectives used outside the trainer: built on first use
            self.repa = self.build_repa(h_proj.shape[-1])
        token_grid: Any = getattr(backbone, "token_grid", None)
        grid = token_grid(x) if token_grid is not None else (x.shape[-2], x.shape[-1])
        repa = self.repa.loss(h_proj, x, grid)
        logs = {**out.logs, "repa": repa.detach()}
        return ObjectiveOutput(loss=out.loss + self.config.repa_weight * repa, per_sample=out.per_sample, logs=logs)

    def target_velocity(
        self, backbone: Backbone, x_t: Tensor, v_t: Tensor, t: Tensor, cond: Condition, true_cond: Condition
    ) -> tuple[Tensor, Tensor]:
        """``(v_hat, dx/dt)``: the velocity in the target and the direction of ``dF/dt``.

        Without ``guidance_target`` both are the path's velocity ``v_t``. With it, ``v_hat`` is the
        guided velocity; ``"official"``: guided by the true (undropped) condition, ``dx/dt = v_t``;
        ``"guided-tangent"``: guided by the dropped condition, ``dx/dt = v_hat``.
        """
        if not self.config.guidance_target:
            return v_t, v_t
        if self.config.experimental.guidance_target_variant == "official":
            return self.guided_velocity(backbone, x_t, v_t, t, true_cond), v_t
        v_hat = self.guided_velocity(backbone, x_t, v_t, t, cond)
        return v_hat, v_hat

    def times(self, n: int, *, generator: torch.Generator, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Times ``(t, r)`` on the path (``(n,)`` each): unit times, resolution shift, scaled to ``t_max``."""
        time_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        t, r = sample_times(self.config, n, generator=generator, dtype=time_dtype)
        t, r = resolution_shift(t, self.shift), resolution_shift(r, self.shift)  # docs/math.md s5, step 4
        return t * self.path.t_max, r * self.path.t_max

    def drop_labels(self, cond: Condition, *, generator: torch.Generator) -> Condition:
        """Replace each label by the null class ``spec.num_classes`` with probability ``label_dropout``."""
        return drop_labels(cond, self.config.label_dropout, self.spec, generator)

    def guided_velocity(
        self, backbone: Backbone, x_t: Tensor, v_t: Tensor, t: Tensor, cond: Condition
    ) -> Tensor:
        """``v <- v + scale (F(x_t, t, t | y) - F(x_t, t, t | null))`` inside the interval (docs/math.md s6).

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
        """``sg(dF/dt)`` along ``(dx_dt, 1, 0)`` on the ``t != r`` rows only; zeros on ``r = t`` rows
        (``Derivative.on_rows``). ``F_t``: the main pass's output, for providers that reuse it."""
        return self.derivative.on_rows(backbone, x_t, t, r, dx_dt, cond, t_max=self.path.t_max, rows=rows, F_t=F_t)

    def forward_then_derivative(
        self, backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, dx_dt: Tensor, cond: Condition,
        rows: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(F, sg(dF/dt), h_proj)``: the main pass with gradients (and, with REPA, the projector's
        reading ``h_proj``, else None) and the derivative on ``rows``, in the order and with the RNG
        replay the provider needs (``Derivative.forward_and_derivative``)."""
        features: list[Tensor | None] = []

        def main(x: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
            F, h_proj = self.main_pass(backbone, x, t, r, cond)
            features.append(h_proj)
            return F

        out = self.derivative.forward_and_derivative(backbone, x_t, t, r, dx_dt, cond, t_max=self.path.t_max,
                                                     rows=rows, main=main)
        return out.F, out.dF_dt, features[0]

    def per_sample_loss(self, F: Tensor, F_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(L, mse, cos)`` per sample, ``(N,)``: ``L = mse + cos`` with ``cos = mean(1 - cos(F, F_hat))``
        over the channel axis when ``directional`` (else 0), docs/math.md s6."""
        mse = row_mean((F - F_hat).square())
        if not self.config.directional:
            return mse, mse, torch.zeros_like(mse)
        cos = row_mean(1 - cosine_similarity(F, F_hat, dim=1))
        return mse + cos, mse, cos

    def weighted_loss(self, F: Tensor, F_hat: Tensor, t: Tensor, r: Tensor) -> ObjectiveOutput:
        """Interval x adaptive weighted mean over the finite rows (docs/math.md s6)."""
        F = F.to(torch.promote_types(F.dtype, torch.float32))
        F_hat = F_hat.to(F.dtype)
        w = interval_weight(t, r, weighting=self.config.weighting, sigma_d=self.config.sigma_d).to(F.dtype)
        finite = rows_finite(F.detach()) & rows_finite(F_hat) & torch.isfinite(w)
        keep = expand_like(finite, F).bool()
        # zero the bad rows *before* the loss: a NaN there would turn their zero gradient into NaN
        L, mse, cos = self.per_sample_loss(torch.where(keep, F, 0.0), torch.where(keep, F_hat, 0.0))
        weight = torch.where(finite, w, 0.0)
        if self.config.adaptive:
            scale = L.detach()
            if self.config.adaptive_groups:
                diagonal = self.config.experimental.diagonal_groups
                groups = (diagonal or self.config.adaptive_groups, self.config.adaptive_groups)
                scale = grouped_mean(scale, t, r, groups, finite)
            weight = weight / (scale + self.config.experimental.adaptive_eps)  # 1 / (sg(L) + eps)
        count = finite.sum()
        loss = (weight * L * finite).sum() / count  # 0 / 0 = NaN when no row is finite
        raw, _, _ = self.per_sample_loss(F.detach(), F_hat)
        logs = {
            "mse": (mse.detach() * finite).sum() / count,
            "cos": (cos.detach() * finite).sum() / count,
            "nonfinite": (~finite).sum().to(torch.float32),
        }
        return ObjectiveOutput(loss=loss, per_sample=raw, logs=logs)


def build(config: TimObjectiveConfig, *, path: ProbabilityPath, derivative: Derivative | None, spec: DataSpec) -> TimObjective:
    """Registry factory of the ``tim`` objective."""
    if derivative is None:
        raise ConfigError("objective 'tim' needs a derivative provider: set [derivative] name = \"dde\" (or \"jvp\")")
    return TimObjective(config, path=path, derivative=derivative, spec=spec)
