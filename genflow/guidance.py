"""Classifier-free guidance shared by samplers."""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.interfaces import Backbone, Condition, DataSpec


def null_condition(cond: Condition, spec: DataSpec) -> Condition:
    """The unconditional counterpart of ``cond``: labels set to the null class ``num_classes``."""
    labels = None if cond.labels is None else torch.full_like(cond.labels, spec.num_classes)
    return Condition(labels=labels, text=cond.text, text_mask=cond.text_mask)


def drop_labels(cond: Condition, rate: float, spec: DataSpec, generator: torch.Generator) -> Condition:
    """Replace each class label by the null class ``spec.num_classes`` with probability ``rate``
    (label dropout for classifier-free guidance); the draw uses ``generator`` on its own device."""
    if cond.labels is None or spec.num_classes <= 0 or rate <= 0:
        return cond
    drop = torch.rand(cond.labels.shape, generator=generator, device=generator.device) < rate
    labels = torch.where(drop.to(cond.labels.device), spec.num_classes, cond.labels)
    return Condition(labels=labels, text=cond.text, text_mask=cond.text_mask)


def guidance_active(cond: Condition, guidance: float) -> bool:
    """Guidance needs a condition to drop and a scale other than 1."""
    return guidance != 1.0 and cond.labels is not None


def guided_forward(
    backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition, null: Condition, guidance: float
) -> Tensor:
    """``F = F_u + w (F_c - F_u)`` (TIM.md section 7, step 1) as one batched 2N call."""
    out = backbone(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([r, r]), Condition.cat([cond, null]))
    F_c, F_u = out.chunk(2)
    return F_u + guidance * (F_c - F_u)
