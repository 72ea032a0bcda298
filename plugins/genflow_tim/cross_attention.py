"""Cross-attention from image tokens to text-encoder states, shared by ``tim-dit`` and ``unet``.

Queries come from the image tokens, keys and values from the text states ``(N, L, D_text)``;
padding positions (``text_mask`` False) are excluded by a key padding mask. A learned null
key/value pair is always visible, so a row without any real token (the empty caption, the null
condition of classifier-free guidance, or no text at all) is well defined and equals "attend to
nothing": the empty caption and a dropped caption give the same output, and padding never does.
Per-head qk RMSNorm as in the self-attention (docs/math.md section 9); no positions on the text side
(the encoder put them in its states). The output projection starts at zero, so a text block begins
as the identity and the pretrained-free model starts like the unconditional one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow_tim.layers import AffineLayerNorm, RMSNorm, RopePairs, SwiGLU, apply_rope, xavier_linear


def masked_mean(text: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``text`` ``(N, L, D)`` over real tokens (``mask`` ``(N, L)``); 0 for empty rows."""
    weights = mask.to(text.dtype)[..., None]  # (N, L, 1)
    return (text * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (N, D)


class TextCrossAttention(nn.Module):
    """``proj(softmax(q k^T / sqrt(d) + mask) v)`` over ``[null, text]``; returns the update only
    (the caller adds it to its residual stream and normalises its input)."""

    def __init__(self, dim: int, text_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(text_dim, 2 * dim)
        self.null_kv = nn.Parameter(torch.empty(2 * dim))  # the always-visible key / value
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def init_weights(self) -> None:
        xavier_linear(self.q)
        xavier_linear(self.kv)
        nn.init.normal_(self.null_kv, std=0.02)
        self.q_norm.init_weights()
        self.k_norm.init_weights()
        nn.init.zeros_(self.proj.weight)  # zero update: the block starts as the identity
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, text: Tensor | None, text_mask: Tensor | None) -> Tensor:
        """``x``: ``(N, T, dim)`` normalised image tokens; ``text``: ``(N, L, text_dim)`` or None (no
        text: only the null token); ``text_mask``: ``(N, L)`` bool, True on real tokens."""
        N, T, D = x.shape
        null = self.null_kv.to(x.dtype).expand(N, 1, 2 * D)  # (N, 1, 2D)
        if text is None:
            kv, mask = null, torch.ones(N, 1, dtype=torch.bool, device=x.device)
        else:
            if text_mask is None:
                text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=x.device)
            kv = torch.cat([null, self.kv(text.to(x.dtype))], dim=1)  # (N, 1 + L, 2D)
            mask = torch.cat([torch.ones_like(text_mask[:, :1]), text_mask], dim=1)  # (N, 1 + L)
        S = kv.shape[1]
        q = self.q_norm(self.q(x).view(N, T, self.heads, self.head_dim).transpose(1, 2))  # (N, H, T, d)
        k, v = kv.view(N, S, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (N, H, S, d) each
        out = F.scaled_dot_product_attention(q, self.k_norm(k), v, attn_mask=mask[:, None, None, :])
        return self.proj(out.transpose(1, 2).reshape(N, T, D))  # (N, T, dim)


class TextPooling(nn.Module):
    """``Linear(masked_mean(text))``: the pooled caption added to the conditioning vector ``c``."""

    def __init__(self, text_dim: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(text_dim, dim)

    def init_weights(self) -> None:
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def forward(self, text: Tensor | None, text_mask: Tensor | None, n: int, like: Tensor) -> Tensor:
        """``(n, dim)``; zero-input (the bias) without text."""
        if text is None:
            return self.linear.bias.to(like.dtype).expand(n, -1)
        mask = text_mask if text_mask is not None else torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        return self.linear(masked_mean(text.to(like.dtype), mask))


class CaptionEmbedder(nn.Module):
    """The official TiM caption embedder (arXiv 2509.04394, text-to-image network):
    ``SwiGLU(LayerNorm(text))``, a LayerNorm with weight and bias (eps 1e-5) over the ``text_dim``-wide
    encoder states, then a SwiGLU ``text_dim -> 4 dim -> dim``; applied once, before the blocks."""

    def __init__(self, text_dim: int, dim: int) -> None:
        super().__init__()
        self.norm = AffineLayerNorm(text_dim)
        self.mlp = SwiGLU(text_dim, 4 * dim, dim)

    def init_weights(self) -> None:
        self.norm.init_weights()
        self.mlp.init_weights()
        for weight in (self.mlp.fc_in.weight, self.mlp.fc_out.weight):  # N(0, 0.02) as the reference
            nn.init.normal_(weight, std=0.02)

    def forward(self, text: Tensor) -> Tensor:
        """``(N, L, text_dim)`` -> ``(N, L, dim)``."""
        return self.mlp(self.norm(text))


class GatedCrossAttention(nn.Module):
    """Cross-attention of the official TiM text-to-image block (``cross_attention = "gated"``).

    ``proj(softmax(q k^T / sqrt(d)) v)`` with ``q = RoPE(qk_norm(W_q x))`` (the image tokens' 2D RoPE
    on the queries only), ``k = qk_norm(W_k text)``, ``v = W_v text``, over every text position:
    no key padding mask and no null token (the caller passes the null caption's states for the
    unconditional rows). The caller normalises ``x`` and ``text`` and gates the update (9-way adaLN).
    """

    def __init__(self, dim: int, text_dim: int, heads: int, qk_norm: str = "rms", rope_pairs: RopePairs = "half") -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.rope_pairs = rope_pairs
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(text_dim, 2 * dim)
        norm = RMSNorm if qk_norm == "rms" else AffineLayerNorm
        self.q_norm = norm(self.head_dim)
        self.k_norm = norm(self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def init_weights(self) -> None:
        for linear in (self.q, self.kv, self.proj):
            xavier_linear(linear)
        self.q_norm.init_weights()
        self.k_norm.init_weights()

    def forward(self, x: Tensor, text: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        """``x``: ``(N, T, dim)``; ``text``: ``(N, L, text_dim)``; ``rope``: the image tokens' ``(T, d)`` tables."""
        N, T, D = x.shape
        L = text.shape[1]
        q = self.q_norm(self.q(x).view(N, T, self.heads, self.head_dim).transpose(1, 2))  # (N, H, T, d)
        q = apply_rope(q, rope, self.rope_pairs)
        k, v = self.kv(text.to(x.dtype)).view(N, L, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, self.k_norm(k), v)  # (N, H, T, d)
        return self.proj(out.transpose(1, 2).reshape(N, T, D))  # (N, T, dim)
