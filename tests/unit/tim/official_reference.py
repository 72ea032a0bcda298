"""A float64 re-implementation of the official TiM class-conditional network's forward
(github.com/WZDTHU/TiM, ``tim/models/c2i/tim_model.py``, ``tim/models/utils/rope.py``), written
from reading that code, on the official state dict itself (no genflow module is used here).

What it re-implements: timm ``PatchEmbed`` (a stride-p convolution, tokens row-major); the GLIDE
sinusoid ``[cos(t f), sin(t f)]``, ``f_i = 10000^(-i / 128)``, on raw ``t`` (``OT_FM.c_noise(t) = t``)
through Linear-SiLU-Linear, for ``t`` and for ``t - r``; ``c = phi(t) + phi(t - r) + table[y]``;
per block, adaLN from a timm SwiGLU ``fc2(silu(fc1_g c) * fc1_x c)`` chunked into six, attention
with ``qkv(x) + qkv_d(phi(t - r))``, a per-head ``nn.LayerNorm`` (eps 1e-5, weight and bias) on q
and k, RoPE from ``VisionRotaryEmbedding.get_cached_2d_rope_from_grid`` on the grid
``meshgrid(arange(h), arange(w), indexing="xy")`` with interleaved pairs, softmax attention with
scale ``d^-1/2``; a SwiGLU MLP; the final layer's ``(shift, scale)`` adaLN; ``unpatchify``; and the
REPA projector (Linear-SiLU-Linear-SiLU-Linear) after block ``encoder_depth``.
``official_t2i_forward`` does the same for the text-to-image network (``tim/models/t2i/tim_model.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _linear(state: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    bias = state.get(f"{name}.bias")
    return F.linear(x, state[f"{name}.weight"], bias)


def _swiglu(state: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return _linear(state, f"{name}.fc2", F.silu(_linear(state, f"{name}.fc1_g", x)) * _linear(state, f"{name}.fc1_x", x))


def _timestep(state: dict[str, Tensor], name: str, t: Tensor) -> Tensor:
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    args = t[:, None].double() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return _linear(state, f"{name}.mlp.2", F.silu(_linear(state, f"{name}.mlp.0", emb)))


def _layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    return y * weight + bias if weight is not None else y


def _rope(h: int, w: int, head_dim: int) -> tuple[Tensor, Tensor]:
    dim = head_dim // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))  # (d/4,)
    grid = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="xy")
    grid = torch.stack(grid, dim=0).reshape(2, -1)  # (2, N): grid[0] the column, grid[1] the row (square)
    a = (grid[0][:, None].double() * freqs).repeat_interleave(2, dim=-1)  # "... n -> ... (n r)", r = 2
    b = (grid[1][:, None].double() * freqs).repeat_interleave(2, dim=-1)
    freqs_all = torch.cat([a, b], dim=-1)  # (N, d)
    return freqs_all.cos(), freqs_all.sin()


def _rotate_pairs(x: Tensor) -> Tensor:
    x = x.reshape(*x.shape[:-1], -1, 2)  # "... (d r) -> ... d r"
    x1, x2 = x.unbind(-1)
    return torch.stack((-x2, x1), dim=-1).reshape(*x.shape[:-2], -1)


def _patch_tokens(state: dict[str, Tensor], x: Tensor, p: int) -> Tensor:
    """The official patch embedding: ``(B, C, H, W) -> (B, T, D)``."""
    tokens = F.conv2d(x, state["x_embedder.proj.weight"], state["x_embedder.proj.bias"], stride=p)
    return tokens.flatten(2).transpose(1, 2)


def official_forward(state: dict[str, Tensor], x: Tensor, t: Tensor, r: Tensor, y: Tensor, *, heads: int,
                     patch: int, encoder_depth: int) -> tuple[Tensor, Tensor]:
    """``(F, h_proj)`` of the official network on ``(N, C, H, W)``, all in float64."""
    B, C, H, W = x.shape
    p = patch
    tokens = _patch_tokens(state, x, p)
    D = tokens.shape[-1]
    hd = D // heads
    t_embed = _timestep(state, "t_embedder", t)[:, None]
    delta = _timestep(state, "delta_embedder", t - r)[:, None]
    c = t_embed + delta + state["y_embedder.embedding_table.weight"][y][:, None]
    cos, sin = _rope(H // p, W // p, hd)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    h_proj = None
    for i in range(depth):
        b = f"blocks.{i}"
        mods = _swiglu(state, f"{b}.adaLN_modulation", c).chunk(6, dim=-1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        a_in = _layer_norm(tokens, None, None, 1e-6) * (1 + scale_msa) + shift_msa
        qkv = _linear(state, f"{b}.attn.qkv", a_in) + F.linear(delta, state[f"{b}.attn.qkv_d.weight"])
        q, k, v = qkv.reshape(B, -1, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        q = _layer_norm(q, state[f"{b}.attn.q_norm.weight"], state[f"{b}.attn.q_norm.bias"], 1e-5)
        k = _layer_norm(k, state[f"{b}.attn.k_norm.weight"], state[f"{b}.attn.k_norm.bias"], 1e-5)
        q = q * cos + _rotate_pairs(q) * sin
        k = k * cos + _rotate_pairs(k) * sin
        attn = ((q * hd**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B, -1, D)
        tokens = tokens + gate_msa * _linear(state, f"{b}.attn.proj", out)
        m_in = _layer_norm(tokens, None, None, 1e-6) * (1 + scale_mlp) + shift_mlp
        tokens = tokens + gate_mlp * _swiglu(state, f"{b}.mlp", m_in)
        if i + 1 == encoder_depth:
            z = F.silu(_linear(state, "projector.0", tokens))
            z = F.silu(_linear(state, "projector.2", z))
            h_proj = _linear(state, "projector.4", z)
    shift, scale = _swiglu(state, "final_layer.adaLN_modulation", c).chunk(2, dim=-1)
    out = _linear(state, "final_layer.linear", _layer_norm(tokens, None, None, 1e-6) * (1 + scale) + shift)
    h, w = H // p, W // p
    out = out.reshape(B, h, w, p, p, C)
    out = torch.einsum("nhwpqc->nchpwq", out).reshape(B, C, H, W)
    assert h_proj is not None
    return out, h_proj


def _attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention with scale ``d^-1/2``, ``(B, heads, N, d)`` -> ``(B, N, heads d)``."""
    weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


def official_t2i_forward(state: dict[str, Tensor], x: Tensor, t: Tensor, r: Tensor, cap_feats: Tensor, *,
                         heads: int, patch: int) -> Tensor:
    """``F`` of the official text-to-image network (``tim/models/t2i/tim_model.py``) in float64.

    ``cap_feats``: ``(B, M, cap_dim)`` text-encoder states exactly as the official code feeds them
    (every position a key: no mask; the null caption's states for unconditional rows). Differences
    to the class-conditional forward, as read: the caption embedder ``SwiGLU(LayerNorm(y))``
    (``nn.LayerNorm(cap_dim)``, eps 1e-5, weight and bias) replaces the class table and is not
    added to ``c = phi(t) + phi(t - r)``; the adaLN SwiGLU gives nine chunks, ``shift, scale, gate``
    for the self-attention, the cross-attention and the MLP; the cross-attention reads
    ``modulate(LN(x))`` for its queries (per-head LayerNorm, then the image RoPE) and ``LN(y)``
    (no affine, eps 1e-6) for its keys (per-head LayerNorm, no RoPE) and values; its update is gated.
    """
    B, C, H, W = x.shape
    p = patch
    tokens = _patch_tokens(state, x, p)
    D = tokens.shape[-1]
    hd = D // heads
    delta = _timestep(state, "delta_embedder", t - r)[:, None]
    c = _timestep(state, "t_embedder", t)[:, None] + delta  # (B, 1, D)
    y = _layer_norm(cap_feats, state["y_embedder.norm.weight"], state["y_embedder.norm.bias"], 1e-5)
    y = _swiglu(state, "y_embedder.mlp", y)  # (B, M, D)
    cos, sin = _rope(H // p, W // p, hd)
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))

    def split(z: Tensor) -> Tensor:  # (B, n, D) -> (B, heads, n, d)
        return z.reshape(B, z.shape[1], heads, hd).transpose(1, 2)

    def norm(z: Tensor, name: str) -> Tensor:
        return _layer_norm(z, state[f"{name}.weight"], state[f"{name}.bias"], 1e-5)

    for i in range(depth):
        b = f"blocks.{i}"
        (shift_msa, scale_msa, gate_msa, shift_msc, scale_msc, gate_msc, shift_mlp, scale_mlp,
         gate_mlp) = _swiglu(state, f"{b}.adaLN_modulation", c).chunk(9, dim=-1)
        a_in = _layer_norm(tokens, None, None, 1e-6) * (1 + scale_msa) + shift_msa
        q, k, v = (_linear(state, f"{b}.attn.qkv", a_in)
                   + F.linear(delta, state[f"{b}.attn.qkv_d.weight"])).chunk(3, dim=-1)
        q, k = norm(split(q), f"{b}.attn.q_norm"), norm(split(k), f"{b}.attn.k_norm")
        q, k = q * cos + _rotate_pairs(q) * sin, k * cos + _rotate_pairs(k) * sin
        tokens = tokens + gate_msa * _linear(state, f"{b}.attn.proj", _attention(q, k, split(v)))
        c_in = _layer_norm(tokens, None, None, 1e-6) * (1 + scale_msc) + shift_msc
        q = norm(split(_linear(state, f"{b}.cross_attn.q", c_in)), f"{b}.cross_attn.q_norm")
        q = q * cos + _rotate_pairs(q) * sin
        k, v = _linear(state, f"{b}.cross_attn.kv", _layer_norm(y, None, None, 1e-6)).chunk(2, dim=-1)
        k = norm(split(k), f"{b}.cross_attn.k_norm")
        tokens = tokens + gate_msc * _linear(state, f"{b}.cross_attn.proj", _attention(q, k, split(v)))
        m_in = _layer_norm(tokens, None, None, 1e-6) * (1 + scale_mlp) + shift_mlp
        tokens = tokens + gate_mlp * _swiglu(state, f"{b}.mlp", m_in)
    shift, scale = _swiglu(state, "final_layer.adaLN_modulation", c).chunk(2, dim=-1)
    out = _linear(state, "final_layer.linear", _layer_norm(tokens, None, None, 1e-6) * (1 + scale) + shift)
    h, w = H // p, W // p
    out = out.reshape(B, h, w, p, p, C)
    return torch.einsum("nhwpqc->nchpwq", out).reshape(B, C, H, W)
