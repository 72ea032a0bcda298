"""Classifier-free guidance shared by samplers and objectives.

The null condition is the null class for labels and the empty caption for text: no real token,
an all-False ``text_mask`` (backbones then attend to their learned null token only), so an empty
prompt and a dropped caption are the same input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genflow.interfaces import Backbone, Condition, DataSpec


def empty_text(cond: Condition, rows: Tensor | None = None) -> Condition:
    """``cond`` with the caption of ``rows`` (a bool ``(N,)`` mask; every row when None) emptied:
    padding ids / zero states and an all-False mask."""
    if cond.text is None:
        return cond
    mask = cond.text_mask if cond.text_mask is not None else torch.ones(cond.text.shape[:2], dtype=torch.bool,
                                                                         device=cond.text.device)
    keep = torch.zeros_like(mask[:, 0]) if rows is None else ~rows.to(mask.device)  # (N,)
    text_keep = keep.reshape(-1, *([1] * (cond.text.dim() - 1)))
    text = torch.where(text_keep, cond.text, torch.zeros_like(cond.text))
    return Condition(labels=cond.labels, text=text, text_mask=mask & keep[:, None])


def null_condition(cond: Condition, spec: DataSpec) -> Condition:
    """The unconditional counterpart of ``cond``: labels set to the null class ``num_classes``,
    captions emptied."""
    labels = None if cond.labels is None else torch.full_like(cond.labels, spec.num_classes)
    return empty_text(Condition(labels=labels, text=cond.text, text_mask=cond.text_mask))


def has_condition(cond: Condition, spec: DataSpec) -> Tensor | None:
    """``(N,)`` bool: the rows that carry a condition to guide by (a real class label or a
    non-empty caption); None when the batch has neither labels nor captions that ``spec`` knows."""
    rows = []
    if cond.labels is not None and spec.num_classes > 0:
        rows.append(cond.labels != spec.num_classes)
    if cond.text is not None and spec.text:
        mask = cond.text_mask if cond.text_mask is not None else torch.ones(cond.text.shape[:2], dtype=torch.bool)
        rows.append(mask.any(dim=1).to(cond.text.device))
    if not rows:
        return None
    return rows[0] if len(rows) == 1 else rows[0] | rows[1].to(rows[0].device)


def drop_labels(cond: Condition, rate: float, spec: DataSpec, generator: torch.Generator) -> Condition:
    """Replace each class label by the null class ``spec.num_classes`` with probability ``rate``
    (label dropout for classifier-free guidance), and empty each caption with probability ``rate``
    (caption dropout); the draws use ``generator`` on its own device."""
    if rate <= 0:
        return cond
    if cond.labels is not None and spec.num_classes > 0:
        drop = torch.rand(cond.labels.shape, generator=generator, device=generator.device) < rate
        labels = torch.where(drop.to(cond.labels.device), spec.num_classes, cond.labels)
        cond = Condition(labels=labels, text=cond.text, text_mask=cond.text_mask)
    if cond.text is not None and spec.text:
        drop = torch.rand(cond.text.shape[:1], generator=generator, device=generator.device) < rate
        cond = empty_text(cond, drop)
    return cond


def guidance_active(cond: Condition, guidance: float) -> bool:
    """Guidance needs a condition to drop (labels or a caption) and a scale other than 1."""
    return guidance != 1.0 and (cond.labels is not None or cond.text is not None)


def guided_forward(
    backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition, null: Condition, guidance: float
) -> Tensor:
    """``F = F_u + w (F_c - F_u)`` (docs/math.md section 7, step 1) as one batched 2N call; ``null`` is
    the unconditional counterpart of ``cond``."""
    out = backbone(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([r, r]), Condition.cat([cond, null]))
    F_c, F_u = out.chunk(2)
    return F_u + guidance * (F_c - F_u)


def guided_velocity(
    backbone: Backbone, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition, spec: DataSpec, guidance: float
) -> Tensor:
    """``backbone(x_t, t, r, cond)``, guided as ``F_u + w (F_c - F_u)`` (one ``2N`` call) when guidance
    is active and ``spec`` knows a condition to drop (class labels or captions); the one wrapper every
    sampler calls. ``t``, ``r``: ``(N,)``."""
    if not guidance_active(cond, guidance) or (cond.text is None and spec.num_classes <= 0):
        return backbone(x_t, t, r, cond)
    return guided_forward(backbone, x_t, t, r, cond, null_condition(cond, spec), guidance)
