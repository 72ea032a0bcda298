"""Clipping inside the fused AdamW (``grad_scale``) is ``clip_grad_norm_`` followed by AdamW.

In float32: the fused kernels read ``grad_scale`` as float32; the two differ by one rounding of
the gradients (multiplied by the clip factor there, divided by its inverse here)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genflow.train.trainer import clip_scale


def _model_with_grads(grad_size: float) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 3))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * grad_size
    return model


def _adamw(model: nn.Module) -> torch.optim.AdamW:
    # a large eps: Adam's step g / (|g| + eps) then depends on the gradients' scale
    return torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01, eps=1.0, fused=True)


@pytest.mark.parametrize("grad_size", [10.0, 1e-3])  # clipped, and left alone
def test_grad_scale_clips_as_clip_grad_norm_does(grad_size):
    reference, ours = _model_with_grads(grad_size), _model_with_grads(grad_size)
    norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm=1.0)
    _adamw(reference).step()
    optimizer = _adamw(ours)
    ours_norm = torch.nn.utils.get_total_norm([p.grad for p in ours.parameters()])
    optimizer.grad_scale = clip_scale(ours_norm, 1.0)
    optimizer.step()
    torch.testing.assert_close(ours_norm, norm, rtol=0, atol=0)
    assert (norm > 1.0) == (grad_size > 1.0)
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=2e-6, atol=1e-7)
