"""The text-conditioned model: a text encoder in front of a backbone, trained as one module.

Batches carry token ids (``Condition.text`` ``(N, L)`` int64 and ``text_mask``); the wrapper
encodes them into states ``(N, L, D_text)`` and calls the backbone with those, so the trainer,
FSDP2, EMA, checkpoints and samplers see one ``Backbone`` whose parameters include the encoder's.
A condition that already holds float states (precomputed by a frozen encoder) passes through.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genflow.interfaces import Backbone, Condition, TextEncoder


class TextConditioned(Backbone):
    """``F(x_t, t, r, cond) = backbone(x_t, t, r, cond with text = encoder(ids, mask))``."""

    def __init__(self, backbone: Backbone, encoder: TextEncoder) -> None:
        super().__init__()
        self.backbone = backbone
        self.text_encoder = encoder
        # The encoder reads integer ids only: no tangent flows through it, so jvp works whenever
        # the backbone supports it.
        self.supports_jvp = backbone.supports_jvp

    def init_weights(self) -> None:
        self.backbone.init_weights()
        self.text_encoder.init_weights()

    def fsdp_units(self) -> list[nn.Module]:
        return [*self.text_encoder.fsdp_units(), *self.backbone.fsdp_units()]

    def encode(self, cond: Condition) -> Condition:
        """``cond`` with token ids replaced by encoder states (masks kept)."""
        if cond.text is None or torch.is_floating_point(cond.text):
            return cond
        mask = cond.text_mask if cond.text_mask is not None else cond.text != 0
        states = self.text_encoder(cond.text, mask)  # (N, L, D_text)
        return Condition(labels=cond.labels, text=states, text_mask=mask)

    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        return self.backbone(x_t, t, r, self.encode(cond))
