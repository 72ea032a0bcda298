"""Representation alignment: the loss, the frozen encoders, the objective's use of the projector."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from genflow_tim.derivatives import DDE
from genflow_tim.dit import DiT, DiTConfig
from genflow_tim.objective import TimObjective, TimObjectiveConfig
from genflow_tim.repa import RandomEncoder, RepresentationAlignment, alignment_loss, build_encoder

from genflow.components.paths import LinearPath
from genflow.errors import GenflowError
from genflow.interfaces import Batch, Condition, DataSpec

SPEC = DataSpec(shape=(3, 16, 16), num_classes=4)


def test_alignment_loss_is_one_minus_the_mean_token_cosine_float64():
    gen = torch.Generator().manual_seed(0)
    h, f = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    by_hand = torch.zeros((), dtype=torch.float64)
    for n in range(3):
        for k in range(5):
            by_hand += 1 - (h[n, k] @ f[n, k]) / (h[n, k].norm() * f[n, k].norm())
    torch.testing.assert_close(alignment_loss(h, f), by_hand / 15, rtol=1e-12, atol=1e-12)
    assert alignment_loss(h, 3 * h).item() == pytest.approx(0.0, abs=1e-6)
    assert alignment_loss(h, -h).item() == pytest.approx(2.0, abs=1e-6)


def test_random_encoder_is_frozen_seeded_and_patch_shaped():
    a, b = RandomEncoder(12, patch=4), RandomEncoder(12, patch=4)
    pixels = torch.rand(2, 3, 16, 20)
    fa = a.features(pixels)
    assert fa.shape == (2, 4 * 5, 12)
    assert torch.equal(fa, b.features(pixels))
    assert not any(p.requires_grad for p in a.parameters())


def test_target_resizes_pixels_to_the_token_grid():
    encoder = RandomEncoder(6, patch=4)
    repa = RepresentationAlignment(encoder)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    feats = repa.target(x, (8, 8))  # 8x8 tokens -> 32x32 pixels, bicubic
    # as the official trainer: pixels in [0, 1], then a bicubic resize
    expected = encoder.features(F.interpolate(((x + 1) / 2).clamp(0, 1), size=(32, 32), mode="bicubic"))
    torch.testing.assert_close(feats, expected)


def test_unknown_encoder_and_missing_radio_are_one_line_errors(tmp_path):
    with pytest.raises(GenflowError, match="allowed: random, dinov2, radio"):
        build_encoder("clip", dim=8)
    with pytest.raises(GenflowError, match="repa_encoder_repo .*repa_weight=0"):
        build_encoder("radio", dim=8, repo=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="repa_encoder"):
        TimObjectiveConfig(repa_encoder="clip")


def _dit(**options) -> DiT:
    torch.manual_seed(0)
    model = DiT(DiTConfig(preset="debug", **options), spec=SPEC).double()
    model.init_weights()
    for p in model.parameters():  # leave adaLN-zero: a non-trivial function everywhere
        p.data += 0.05 * torch.randn_like(p)
    return model


def _objective(weight: float) -> TimObjective:
    config = TimObjectiveConfig(repa_weight=weight, adaptive=False)
    return TimObjective(config, path=LinearPath(), derivative=DDE(), spec=SPEC)


def _batch() -> Batch:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 16, 16, generator=gen, dtype=torch.float64) * 2 - 1
    return Batch(x=x, cond=Condition(labels=torch.randint(0, 4, (6,), generator=gen)))


class _Recording(TimObjective):
    def main_pass(self, backbone, x_t, t, r, cond):
        self.seen = (x_t, t, r, cond)
        return super().main_pass(backbone, x_t, t, r, cond)


def test_objective_adds_the_weighted_alignment_of_the_projector():
    model = _dit(projector_out=10, projector_dim=16, projector_depth=1)
    base = _objective(0.0).loss(model, _batch(), generator=torch.Generator().manual_seed(2))
    objective = _Recording(TimObjectiveConfig(repa_weight=0.5, adaptive=False), path=LinearPath(),
                           derivative=DDE(), spec=SPEC)
    objective.check_backbone(model, distributed=False)
    out = objective.loss(model, _batch(), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out.loss, base.loss + 0.5 * out.logs["repa"])
    # the logged term: the projection of the main pass's input against the encoder's features of
    # the clean batch (16x16 pixels resized to the 8x8 token grid times the encoder's patch 16)
    x_t, t, r, cond = objective.seen
    with torch.no_grad():
        _, h = model.forward_features(x_t, t, r, cond)
    assert objective.repa is not None
    pixels = F.interpolate(((_batch().x + 1) / 2).clamp(0, 1), size=(128, 128), mode="bicubic")
    expected = alignment_loss(h, objective.repa.encoder.features(pixels))
    torch.testing.assert_close(out.logs["repa"], expected)
    assert 0.5 < float(expected) < 1.5  # random projector vs random encoder: cos ~ 0


def test_alignment_gradient_reaches_the_projector_and_the_blocks_up_to_its_depth_only():
    model = _dit(projector_out=10, projector_dim=16, projector_depth=1)
    objective = _objective(1.0)
    objective.check_backbone(model, distributed=False)
    out = objective.loss(model, _batch(), generator=torch.Generator().manual_seed(2))
    repa_only = out.logs["repa"]
    assert repa_only.grad_fn is None  # logged detached
    model.zero_grad()
    x_t = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    t = torch.tensor([0.7, 0.4], dtype=torch.float64)
    _, h = model.forward_features(x_t, t, t * 0.5, Condition(labels=torch.tensor([1, 4])))
    assert objective.repa is not None
    objective.repa.loss(h, x_t, model.token_grid(x_t)).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["projector.0.weight"].abs().sum() > 0
    assert grads["blocks.0.attn.qkv.weight"].abs().sum() > 0
    assert grads["blocks.1.attn.qkv.weight"] is None or grads["blocks.1.attn.qkv.weight"].abs().sum() == 0
    assert grads["final.linear.weight"] is None or grads["final.linear.weight"].abs().sum() == 0


def test_repa_needs_a_projector():
    with pytest.raises(GenflowError, match="projector_out"):
        _objective(1.0).check_backbone(_dit(), distributed=False)
    _objective(0.0).check_backbone(_dit(), distributed=False)  # off: nothing to check
