"""Time-derivative providers ``dde`` (finite differences: central, or one-sided reusing the main
pass) and ``jvp`` (forward-mode AD), docs/math.md section 4.

All compute ``dF/dt``, the total derivative of ``fn(x(t), t)`` along the tangent ``(dx_dt, 1)``
(``r`` and the condition are closed over by ``fn``, so ``dr/dt = 0``), detached, without
advancing the global RNG.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import attrs
import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from genflow.config.domains import positive
from genflow.errors import GenflowError
from genflow.interfaces import Backbone, Derivative, TimeFunction, expand_like
from genflow.rng import preserved_rng

# --------------------------------------------------------------------------------------------
# DDE: central differences with forward passes only
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DdeConfig:
    """Options of the ``dde`` provider (docs/math.md section 4; the accuracy and cost tables behind the
    defaults: docs/performance.md sections 4-5).

    ``epsilon``: half-width ``e`` of the central difference (the paper's ``e = 0.005``), or the step
    of the one-sided one. Larger ``e`` shrinks rounding noise in bf16 passes (zero-mean, so it
    averages out in the regression) at the price of truncation bias (which does not).
    ``precision``: ``"model"`` (default) runs the passes as the caller's context dictates: fp32 in
    fp32 training, bf16 under bf16 autocast or FSDP bf16 parameters, as the reference does.
    ``"fp32"`` disables autocast for the passes (inputs of at least fp32): more accurate under bf16
    autocast, and slower; with FSDP bf16 parameters the passes stay bf16 whatever this says.
    ``stencil``: ``"central"`` evaluates ``F`` at ``t - e`` and ``t + e`` (error ``O(e^2)``; under
    bf16 half the rounding error of the one-sided stencil); ``"one-sided"`` evaluates it at
    ``t + e`` only (``t - e`` near ``t_max``) and reuses the caller's main pass for ``F(t)`` (error
    ``O(e)``, one pass instead of two; the CPU presets' choice). The reuse needs both points in the
    same precision: with ``precision = "fp32"`` under an active autocast (the main pass then ran in
    bf16) the provider recomputes ``F(t)`` in fp32 itself, which is accurate but saves nothing.
    """

    epsilon: float = attrs.field(default=0.005, validator=positive(integer=False))
    precision: Literal["fp32", "model"] = "model"
    stencil: Literal["central", "one-sided"] = "central"


def stencil(t: Tensor, t_min: Tensor, t_max: float, epsilon: float) -> tuple[Tensor, Tensor]:
    """Evaluation times ``(a, b)``, ``b - a = 2h``, of the difference at ``t`` inside ``[t_min, t_max]``.

    ``h = min(e, (t_max - t_min) / 2)``; the window ``[t - h, t + h]`` slides inside the interval
    where it would leave it (a one-sided difference when ``t`` sits on a bound).
    """
    h = torch.clamp((t_max - t_min) / 2, max=epsilon)
    a = torch.minimum(torch.maximum(t - h, t_min), t_max - 2 * h)
    return a, torch.clamp(a + 2 * h, max=t_max)  # the clamp only guards rounding


def one_sided_step(t: Tensor, t_min: Tensor, t_max: float, epsilon: float) -> Tensor:
    """Signed step ``s`` of the one-sided difference at ``t`` inside ``[t_min, t_max]``.

    Forward (``s = +e``) where ``t + e <= t_max``, else backward (``s = -e``) where ``t - e >= t_min``;
    when neither fits, the longer side, shortened to the room left (0 on a zero-width interval).
    """
    up, down = t_max - t, t - t_min
    forward = (up >= epsilon) | (up >= down)
    return torch.where(forward, torch.clamp(up, min=0.0, max=epsilon), -torch.clamp(down, min=0.0, max=epsilon))


class DDE(Derivative):
    """``dF/dt ~ [F(x_t + (b - t) dx, b) - F(x_t + (a - t) dx, a)] / (b - a)``, ``b - a = 2e`` (docs/math.md s4).

    Only forward passes: works with fused attention, activation checkpointing and FSDP. On the
    linear path ``x_t + s v_t`` is exactly the re-interpolation ``x_{t+s}`` from the same ``(x, z)``.
    With ``stencil = "one-sided"``: ``[F(x_t + s dx, t + s) - F(x_t, t)] / s``, ``|s| = e``, where
    ``F(x_t, t)`` is the caller's main pass, handed over as ``F_t`` (``uses_output``).
    """

    forward_only = True

    def __init__(self, config: DdeConfig | None = None) -> None:
        self.config = config or DdeConfig()

    @property
    def uses_output(self) -> bool:  # type: ignore[override]
        """True with the one-sided stencil: the objective hands over its main pass as ``F_t``."""
        return self.config.stencil == "one-sided"

    @property
    def order(self) -> int:  # type: ignore[override]
        """2 for the central stencil (error ``O(e^2)``), 1 for the one-sided one (``O(e)``)."""
        return 1 if self.config.stencil == "one-sided" else 2

    def time_derivative(
        self,
        fn: TimeFunction,
        x_t: Tensor,
        t: Tensor,
        dx_dt: Tensor,
        *,
        t_min: Tensor | None = None,
        t_max: float = 1.0,
        F_t: Tensor | None = None,
    ) -> Tensor:
        if self.config.stencil == "one-sided":
            return self._one_sided(fn, x_t, t, dx_dt, t_min, t_max, F_t)
        dtype = self._dtype(x_t)
        x, dx, t = x_t.to(dtype), dx_dt.to(dtype), t.to(dtype)
        t_lo = torch.zeros_like(t) if t_min is None else t_min.to(dtype)
        a, b = stencil(t, t_lo, t_max, self.config.epsilon)
        x_a, x_b = x + expand_like(a - t, x) * dx, x + expand_like(b - t, x) * dx
        with torch.no_grad(), self._precision(x.device):
            F_b, F_a = self._passes(fn, x_b, b, x_a, a)
        # the actual (rounded) window width; clamped so a zero-width window gives 0, not 0/0
        width = torch.clamp(b - a, min=torch.finfo(dtype).tiny)
        dF_dt = (F_b.to(dtype) - F_a.to(dtype)) / expand_like(width, x)
        return dF_dt.to(x_t.dtype)

    def _one_sided(
        self, fn: TimeFunction, x_t: Tensor, t: Tensor, dx_dt: Tensor, t_min: Tensor | None, t_max: float,
        F_t: Tensor | None,
    ) -> Tensor:
        """``[F(x_t + s dx, t + s) - F(x_t, t)] / s``, reusing ``F_t`` when it has the passes' precision."""
        dtype = self._dtype(x_t)
        t = t.to(torch.promote_types(t.dtype, torch.float32))
        t_lo = torch.zeros_like(t) if t_min is None else t_min.to(t.dtype)
        t_s = t + one_sided_step(t, t_lo, t_max, self.config.epsilon)
        step = (t_s - t).to(dtype)  # the actual (rounded) step
        x = x_t.to(dtype)
        x_s = x + expand_like(step, x) * dx_dt.to(dtype)
        if F_t is not None and not self._reusable(x_t):
            F_t = None
        with torch.no_grad(), self._precision(x.device):
            if F_t is None:
                F_s, F_t = self._passes(fn, x_s, t_s, x, t)
            else:
                # the same input dtype as the main pass: the two points share their rounding
                with preserved_rng(x.device):
                    F_s = fn(x_s.to(x_t.dtype), t_s)
        step = torch.where(step == 0, torch.ones_like(step), step)  # zero-width interval: 0, not 0/0
        dF_dt = (F_s.to(dtype) - F_t.detach().to(dtype)) / expand_like(step, x)
        return dF_dt.to(x_t.dtype)

    def _reusable(self, x_t: Tensor) -> bool:
        """Whether the main pass ran in the precision of this provider's passes."""
        if self.config.precision == "model":
            return True
        return x_t.dtype == self._dtype(x_t) and not torch.is_autocast_enabled(x_t.device.type)

    def _dtype(self, x_t: Tensor) -> torch.dtype:
        if self.config.precision == "fp32":
            return torch.promote_types(x_t.dtype, torch.float32)
        return x_t.dtype

    def _precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.config.precision == "fp32":
            return torch.autocast(device_type=device.type, enabled=False)
        return contextlib.nullcontext()

    def _passes(
        self, fn: TimeFunction, x_b: Tensor, b: Tensor, x_a: Tensor, a: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Both passes as one call of ``fn`` on a ``2N`` batch (``fn`` accepts 2-fold tiles; one
        dropout mask would cover both halves, and genflow's backbones have no dropout)."""
        with preserved_rng(x_b.device):
            F = fn(torch.cat([x_b, x_a]), torch.cat([b, a]))  # (2N, ...)
        return F.chunk(2)


# --------------------------------------------------------------------------------------------
# JVP: forward-mode AD
# --------------------------------------------------------------------------------------------


class JVP(Derivative):
    """``dF/dt = torch.func.jvp(F, (x_t, t), (dx_dt, 1))`` (docs/math.md section 4): exact up to float error.

    Runs attention on PyTorch's math SDPA backend (the fused kernels have no forward-mode AD) and
    cannot see through FSDP2 / DDP wrappers: ``check_backbone`` refuses those and names ``dde``.
    """

    forward_only = False

    def time_derivative(
        self,
        fn: TimeFunction,
        x_t: Tensor,
        t: Tensor,
        dx_dt: Tensor,
        *,
        t_min: Tensor | None = None,
        t_max: float = 1.0,
        F_t: Tensor | None = None,
    ) -> Tensor:
        t = t.to(torch.promote_types(t.dtype, torch.float32))
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), preserved_rng(x_t.device):
            _, dF_dt = torch.func.jvp(fn, (x_t, t), (dx_dt.to(x_t.dtype), torch.ones_like(t)))
        return dF_dt.detach()

    def check_backbone(self, backbone: Backbone, *, distributed: bool) -> None:
        if not backbone.supports_jvp:
            raise GenflowError(
                f"derivative 'jvp' needs forward-mode AD, which backbone {type(backbone).__name__} does "
                "not support (e.g. fused attention kernels); use --derivative dde instead"
            )
        if distributed:
            raise GenflowError(
                "derivative 'jvp' cannot run through distributed (FSDP2 / DDP) wrappers, which break "
                "forward-mode AD; use --derivative dde instead"
            )


def build_dde(config: DdeConfig) -> DDE:
    """Registry factory of the ``dde`` provider."""
    return DDE(config)


def build_jvp(config: object) -> JVP:
    """Registry factory of the ``jvp`` provider (no options)."""
    return JVP()
