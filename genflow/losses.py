"""Loss reductions shared by objectives."""

from __future__ import annotations

import torch
from torch import Tensor


def finite_mean(per_sample: Tensor, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Mean of the finite entries of ``per_sample`` (optionally weighted), and the finite mask.

    Non-finite rows are masked out so one bad sample cannot poison the step; when *no* row is
    finite the result is non-finite on purpose, so the trainer's guard skips the step. No host
    synchronisation.
    """
    finite = torch.isfinite(per_sample)
    values = per_sample if weight is None else per_sample * weight
    finite = finite & torch.isfinite(values)
    masked = torch.where(finite, values, torch.zeros_like(values)).sum() / finite.sum().clamp(min=1)
    loss = torch.where(finite.any(), masked, values.sum())
    return loss, finite
