"""``transformer``: a small text encoder trained jointly with the generator.

Token embedding + learned absolute positions -> ``depth`` pre-LayerNorm transformer layers
(self-attention with a key padding mask, GELU MLP of width ``4 dim``) -> LayerNorm. It starts from
scratch and learns from the diffusion loss alone, through the backbone's cross-attention: the
captions of a store such as ``shapes`` ("two red circles left of a blue square") have a few dozen
words, which a small encoder learns in minutes, and nothing is downloaded. Its tokenizer is a
sentencepiece model (:mod:`genflow.text.tokenizer`) named by ``tokenizer`` and checked against
``tokenizer_sha256``; ``genflow train`` trains one on the data's captions when ``tokenizer`` is
empty and records both in the run's config.

A pretrained encoder from another library plugs in as another ``text_encoder`` component
(``genflow_text_encoders`` hook; see docs/plugins.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow.config.domains import hex_digest, interval, non_negative, positive, text
from genflow.errors import ConfigError, GenflowError
from genflow.interfaces import DataSpec, TextEncoder
from genflow.text.tokenizer import Tokenizer


@attrs.frozen(kw_only=True)
class TransformerTextConfig:
    """``tokenizer``: a sentencepiece model file ("" = train one on the data's captions on first use
    and record it); ``tokenizer_sha256``: its checksum (filled in by ``genflow train``, checked on
    every load); ``vocab_size``: the size of an automatically trained tokenizer (an upper bound) and
    of the embedding while no tokenizer is set; ``max_length``: captions are truncated to this many
    tokens (with a warning); ``dim``, ``depth``, ``heads``: the transformer."""

    tokenizer: str = attrs.field(default="", validator=text(empty=True))
    tokenizer_sha256: str = attrs.field(default="", validator=hex_digest())
    vocab_size: int = attrs.field(default=1000, validator=interval(4, integer=True))
    max_length: int = attrs.field(default=64, validator=positive())
    dim: int = attrs.field(default=256, validator=positive())
    depth: int = attrs.field(default=2, validator=non_negative())
    heads: int = attrs.field(default=4, validator=positive())


class EncoderLayer(nn.Module):
    """``h + Attn(LN(h), mask)``, then ``h + MLP(LN(h))`` (pre-LN)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, h: Tensor, key_mask: Tensor) -> Tensor:
        N, L, D = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(N, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])  # (N, H, L, d)
        h = h + self.proj(out.transpose(1, 2).reshape(N, L, D))
        return h + self.mlp(self.norm2(h))  # (N, L, D)


class TransformerTextEncoder(TextEncoder):
    """The ``transformer`` text encoder (see the module docstring)."""

    def __init__(self, config: TransformerTextConfig) -> None:
        super().__init__()
        _check(config)
        self.config = config
        self.tokenizer = Tokenizer(config.tokenizer, expected_sha256=config.tokenizer_sha256) \
            if config.tokenizer else None
        self.dim = config.dim
        vocab = self.tokenizer.vocab_size if self.tokenizer is not None else config.vocab_size
        self.embedding = nn.Embedding(vocab, config.dim)
        self.position = nn.Parameter(torch.empty(config.max_length, config.dim))
        self.layers = nn.ModuleList(EncoderLayer(config.dim, config.heads) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def tokenize(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        if self.tokenizer is None:
            raise GenflowError("text_encoder.tokenizer is not set: train one with genflow tokenizer train "
                               "--data STORE --vocab-size N --out FILE, or let genflow train make one")
        return self.tokenizer(captions, self.config.max_length)

    def init_weights(self) -> None:
        """N(0, 0.02) embeddings and positions; Xavier Linear layers, zero biases; LayerNorms at 1, 0."""
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.position, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.layers)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        length, limit = ids.shape[1], self.position.shape[0]
        if length > limit:
            raise ValueError(f"text encoder: {length} tokens but max_length is {limit}")
        # An empty caption (no real token) would leave its rows' attention with no key: let those
        # rows see position 0. Their states are ignored downstream (the backbone masks them).
        empty = ~mask.any(dim=1, keepdim=True)  # (N, 1)
        key_mask = mask | (empty & (torch.arange(length, device=ids.device) == 0))  # (N, L)
        h = self.embedding(ids.clamp(0, self.embedding.num_embeddings - 1)) * math.sqrt(self.dim)
        h = h + self.position[:length]  # (N, L, D)
        for layer in self.layers:
            h = layer(h, key_mask)
        return self.norm(h)  # (N, L, D)

    def provenance(self) -> dict[str, Any]:
        if self.tokenizer is None:
            return {}
        return {"tokenizer": str(self.tokenizer.path), "tokenizer_sha256": self.tokenizer.sha256}


def _check(config: TransformerTextConfig) -> None:
    if config.dim < 1 or config.heads < 1 or config.dim % config.heads:
        raise ConfigError(f"text_encoder.dim = {config.dim} must split into text_encoder.heads = {config.heads} heads")
    if config.depth < 0 or config.max_length < 1 or config.vocab_size < 4:
        raise ConfigError("text_encoder.depth must be >= 0, max_length >= 1 and vocab_size >= 4")


def build_transformer(config: TransformerTextConfig, *, spec: DataSpec | None = None, **_: object) -> TransformerTextEncoder:
    """Build the ``transformer`` text encoder (on the current default device; meta for training)."""
    return TransformerTextEncoder(config)
