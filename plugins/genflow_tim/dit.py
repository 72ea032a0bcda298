"""``tim-dit``: the interval-aware DiT of Transition Models (docs/math.md section 9).

A DiT over patch tokens of any size (native resolution) that reads the time pair ``(t, r)``:

- patch embedding without absolute positions; 2D axial RoPE on queries and keys after a per-head
  qk-norm (RMSNorm), so any ``H x W`` multiple of the patch size works (``DiTConfig.qk_norm``,
  ``rope_pairs``, ``rope_first_axis`` select the official TiM network's layout instead);
- decoupled embeddings ``c = phi_t(t) + phi_dt(t - r) [+ class]``, two independent sinusoid -> MLP
  embedders fed raw ``t`` in ``[0, 1]`` (docs/math.md section 4: ``1000 t`` breaks DDE);
- interval-aware attention ``qkv = W LN_mod(h) + b + W' phi_dt(t - r)``;
- LoRA-AdaLN: per-block low-rank SwiGLU ``D -> rank -> 6D``, zero-initialised (adaLN-zero);
- SwiGLU MLP with hidden ``floor(8D / 3)``;
- with captions (``DataSpec.text``, text-to-image XL/1 of docs/math.md section 9): per-block
  cross-attention to the text-encoder states between self-attention and MLP, with key padding
  masks and a learned null token (:mod:`genflow_tim.cross_attention`), and the pooled caption added
  to ``c`` (``text_pooled``). Nothing of this exists without captions. ``caption_embedder`` and
  ``cross_attention = "gated"`` select the official text-to-image network's caption embedder and
  gated cross-attention instead (``DiTConfig``).

Parameter counts match the reference (without its REPA projector head): class-conditional B/4 on
4x32x32 latents 128.8M, XL/2 664.1M.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow.components.nn import TimestepEmbedder
from genflow.config.domains import non_negative, positive
from genflow.errors import ConfigError
from genflow.interfaces import Backbone, Condition, DataSpec
from genflow_tim.cross_attention import CaptionEmbedder, GatedCrossAttention, TextCrossAttention, TextPooling
from genflow_tim.layers import (
    AffineLayerNorm,
    RMSNorm,
    RopePairs,
    SwiGLU,
    apply_rope,
    modulate,
    xavier_linear,
)

PresetName = Literal["debug", "S", "B/4", "XL/2", "XL/1"]
QkNorm = Literal["rms", "layer"]
RopeFirstAxis = Literal["row", "col"]
CaptionEmbedding = Literal["none", "norm-swiglu"]
CrossAttentionKind = Literal["masked", "gated"]


@attrs.frozen(kw_only=True)
class Preset:
    """Architecture of one preset; ``adaln_rank`` is the LoRA-AdaLN hidden width (~D/3)."""

    hidden_size: int
    depth: int
    heads: int
    patch_size: int
    adaln_rank: int


#: docs/math.md section 9: B/4 and XL/2 are the reference's class-conditional presets.
PRESETS: dict[str, Preset] = {
    "debug": Preset(hidden_size=64, depth=2, heads=4, patch_size=2, adaln_rank=32),
    "S": Preset(hidden_size=384, depth=12, heads=6, patch_size=2, adaln_rank=128),
    "B/4": Preset(hidden_size=768, depth=12, heads=12, patch_size=4, adaln_rank=256),
    "XL/2": Preset(hidden_size=1152, depth=28, heads=16, patch_size=2, adaln_rank=384),
    # Text-to-image (docs/math.md section 9): XL at patch 1, for 32x-compressed latents; add captions
    # for the per-block cross-attention.
    "XL/1": Preset(hidden_size=1152, depth=28, heads=16, patch_size=1, adaln_rank=384),
}


@attrs.frozen(kw_only=True)
class DiTConfig:
    """``preset`` picks the architecture; any other size field left at 0 keeps the preset's value.

    ``text_pooled``: with captions, also add the masked mean of the text states (through a Linear)
    to the conditioning vector ``c``; the cross-attention is always there with captions.

    Layout options (the defaults are genflow's; the official TiM network, arXiv 2509.04394, is
    ``qk_norm = "layer"``, ``rope_pairs = "interleaved"``, ``rope_first_axis = "col"``, see
    docs/parity.md): ``qk_norm`` is the per-head norm of queries and keys, ``"rms"`` (RMSNorm, eps
    1e-6) or ``"layer"`` (LayerNorm with weight and bias, eps 1e-5); ``rope_pairs`` the channels
    that rotate together, ``"half"`` (``i, i + d/2``) or ``"interleaved"`` (``2i, 2i + 1``);
    ``rope_first_axis`` the token index that drives the first half of the angles.
    ``projector_out`` > 0 adds the representation-alignment projector: an MLP
    ``D -> projector_dim -> projector_dim -> projector_out`` (SiLU between) on the hidden states
    after block ``projector_depth`` (``DiT.forward_features``); it does not change ``forward``.

    Text layout options (with captions; the official text-to-image network is ``caption_embedder =
    "norm-swiglu"``, ``cross_attention = "gated"``, ``text_pooled = false``, docs/official-weights.md):
    ``caption_embedder`` ``"none"`` (the blocks read the encoder states) or ``"norm-swiglu"`` (a
    LayerNorm, then a SwiGLU ``D_text -> 4D -> D``, once before the blocks); ``cross_attention``
    ``"masked"`` (genflow: ungated, key padding mask and a learned null token) or ``"gated"`` (the
    official block: a 9-way adaLN shifts, scales and gates the cross-attention input and update, the
    text states are LayerNormed, queries get the image RoPE, every text position is a key, and a
    row without any real token reads the null caption: the buffer ``null_caption``,
    ``null_caption_length`` states wide, the encoded empty prompt for an imported model, zeros
    otherwise).
    """

    preset: PresetName = "debug"
    hidden_size: int = attrs.field(default=0, validator=non_negative())
    depth: int = attrs.field(default=0, validator=non_negative())
    heads: int = attrs.field(default=0, validator=non_negative())
    patch_size: int = attrs.field(default=0, validator=non_negative())
    adaln_rank: int = attrs.field(default=0, validator=non_negative())
    text_pooled: bool = True
    qk_norm: QkNorm = attrs.field(default="rms", validator=attrs.validators.in_(("rms", "layer")))
    rope_pairs: RopePairs = attrs.field(default="half", validator=attrs.validators.in_(("half", "interleaved")))
    rope_first_axis: RopeFirstAxis = attrs.field(default="row", validator=attrs.validators.in_(("row", "col")))
    projector_out: int = attrs.field(default=0, validator=non_negative())
    projector_dim: int = attrs.field(default=2048, validator=positive())
    projector_depth: int = attrs.field(default=0, validator=non_negative())
    caption_embedder: CaptionEmbedding = attrs.field(default="none", validator=attrs.validators.in_(("none", "norm-swiglu")))
    cross_attention: CrossAttentionKind = attrs.field(default="masked", validator=attrs.validators.in_(("masked", "gated")))
    null_caption_length: int = attrs.field(default=256, validator=positive())

    def resolve(self) -> Preset:
        """The preset with this config's non-zero overrides applied."""
        base = PRESETS[self.preset]
        overrides = {k: v for k, v in attrs.asdict(self).items() if k in attrs.fields_dict(Preset) and v}
        return attrs.evolve(base, **overrides)


def qk_norm_layer(kind: QkNorm, dim: int) -> RMSNorm | AffineLayerNorm:
    """The per-head query / key norm: ``"rms"`` (genflow) or ``"layer"`` (the official TiM network)."""
    return RMSNorm(dim) if kind == "rms" else AffineLayerNorm(dim)


# --------------------------------------------------------------------------------------------
# 2D axial RoPE
# --------------------------------------------------------------------------------------------


def axial_rope(h: int, w: int, head_dim: int, *, device: torch.device, dtype: torch.dtype,
               theta: float = 10000.0, pairs: RopePairs = "half",
               first_axis: RopeFirstAxis = "row") -> tuple[Tensor, Tensor]:
    """``cos``, ``sin`` of shape ``(h w, head_dim)`` for tokens in row-major order.

    ``d / 4`` frequencies ``theta^(-k / (d / 4))``; the first half of the rotation angles follows
    the ``first_axis`` index (row by default), the second half the other one. ``pairs = "half"``:
    channels ``(i, i + d / 2)`` rotate together (``rotate_half``); ``"interleaved"``: channels
    ``(2i, 2i + 1)`` (``rotate_interleaved``, the official TiM network's layout).
    """
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, device=device, dtype=dtype) / quarter)  # (d/4,)
    rows = torch.arange(h, device=device, dtype=dtype).repeat_interleave(w)  # (h w,)
    cols = torch.arange(w, device=device, dtype=dtype).repeat(h)  # (h w,)
    first, second = (rows, cols) if first_axis == "row" else (cols, rows)
    angles = torch.cat([first[:, None] * freqs, second[:, None] * freqs], dim=-1)  # (h w, d/2)
    # (h w, d): a0 a0 a1 a1 ... (interleaved) or a0 a1 ... a0 a1 ... (half)
    angles = angles.repeat_interleave(2, dim=-1) if pairs == "interleaved" else torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


class IntervalAwareAttention(nn.Module):
    """Self-attention whose q, k, v also read the interval embedding ``phi_dt(t - r)``.

    docs/math.md section 9: ``qkv = W LN_mod(h) + b + W' phi_dt(t - r)``, ``W'`` bias-free and broadcast
    over tokens; then per-head qk RMSNorm and 2D RoPE on q and k.
    """

    def __init__(self, dim: int, heads: int, qk_norm: QkNorm = "rms", rope_pairs: RopePairs = "half") -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.rope_pairs = rope_pairs
        self.qkv = nn.Linear(dim, 3 * dim)
        self.qkv_interval = nn.Linear(dim, 3 * dim, bias=False)  # W'
        self.q_norm = qk_norm_layer(qk_norm, self.head_dim)
        self.k_norm = qk_norm_layer(qk_norm, self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def init_weights(self) -> None:
        for linear in (self.qkv, self.qkv_interval, self.proj):
            xavier_linear(linear)
        self.q_norm.init_weights()
        self.k_norm.init_weights()

    def forward(self, x: Tensor, phi_dt: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        N, T, D = x.shape
        qkv = self.qkv(x) + self.qkv_interval(phi_dt)  # (N, T, 3D) + (N, 1, 3D)
        q, k, v = qkv.view(N, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (N, H, T, d) each
        q = apply_rope(self.q_norm(q), rope, self.rope_pairs)
        k = apply_rope(self.k_norm(k), rope, self.rope_pairs)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, d)
        return self.proj(out.transpose(1, 2).reshape(N, T, D))  # (N, T, D)


class TiMBlock(nn.Module):
    """One adaLN-zero transformer block with interval-aware attention and LoRA-AdaLN.

    With captions (``text_dim`` > 0) a cross-attention sits between attention and MLP: genflow's
    ungated masked one (``cross_attention = "masked"``), or the official gated one (``"gated"``,
    arXiv 2509.04394 text-to-image network): the adaLN then gives nine chunks, ``(shift, scale,
    gate)`` of the self-attention, the cross-attention and the MLP in that order, and
    ``h += gate_msc * cross(modulate(LN(h), shift_msc, scale_msc), LN(text), rope)``.
    """

    def __init__(self, dim: int, heads: int, adaln_rank: int, text_dim: int = 0, *, qk_norm: QkNorm = "rms",
                 rope_pairs: RopePairs = "half", cross_attention: CrossAttentionKind = "masked") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = IntervalAwareAttention(dim, heads, qk_norm, rope_pairs)
        self.cross: nn.Module | None = None
        self.gated = bool(text_dim) and cross_attention == "gated"
        if text_dim:  # text-to-image: cross-attention to the caption (absent otherwise)
            self.norm_cross = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            if self.gated:
                self.norm_text = nn.LayerNorm(text_dim, elementwise_affine=False, eps=1e-6)
                self.cross = GatedCrossAttention(dim, text_dim, heads, qk_norm, rope_pairs)
            else:
                self.cross = TextCrossAttention(dim, text_dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = SwiGLU(dim, (8 * dim) // 3, dim)  # hidden floor(8D/3)
        # docs/math.md section 9: LoRA-AdaLN, low-rank SwiGLU D -> rank -> 6D (9D when gated).
        self.adaln = SwiGLU(dim, adaln_rank, (9 if self.gated else 6) * dim)

    def init_weights(self) -> None:
        self.attn.init_weights()
        if self.cross is not None:
            self.cross.init_weights()
        self.mlp.init_weights()
        self.adaln.init_weights(zero_out=True)  # adaLN-zero: every block starts as the identity

    def forward(self, h: Tensor, c: Tensor, phi_dt: Tensor, rope: tuple[Tensor, Tensor],
                text: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:
        mods = self.adaln(c).chunk(9 if self.gated else 6, dim=-1)
        shift_msa, scale_msa, gate_msa = mods[:3]
        shift_mlp, scale_mlp, gate_mlp = mods[-3:]
        # LayerNorm outputs float32 under CUDA autocast; modulating in the residual stream's dtype
        # keeps bf16 (not fp32) copies for the backward pass and halves this elementwise traffic.
        h = h + gate_msa * self.attn(modulate(self.norm1(h).to(h.dtype), shift_msa, scale_msa), phi_dt, rope)
        if self.gated:  # the official text-to-image block: gated, modulated, RoPE on the queries
            assert text is not None
            shift_msc, scale_msc, gate_msc = mods[3:6]
            x = modulate(self.norm_cross(h).to(h.dtype), shift_msc, scale_msc)
            h = h + gate_msc * self.cross(x, self.norm_text(text).to(h.dtype), rope)  # type: ignore[misc]
        elif self.cross is not None:  # text-to-image XL/1 (docs/math.md section 9): between attention and MLP
            h = h + self.cross(self.norm_cross(h).to(h.dtype), text, text_mask)  # (N, T, D)
        h = h + gate_mlp * self.mlp(modulate(self.norm2(h).to(h.dtype), shift_mlp, scale_mlp))  # (N, T, D)
        return h


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm -> Linear to patch pixels; low-rank SwiGLU ``D -> D/2 -> 2D``."""

    def __init__(self, dim: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaln = SwiGLU(dim, dim // 2, 2 * dim)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)

    def init_weights(self) -> None:
        self.adaln.init_weights(zero_out=True)
        nn.init.zeros_(self.linear.weight)  # zero output: F_theta = 0 at initialisation
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaln(c).chunk(2, dim=-1)  # (N, 1, D) each
        return self.linear(modulate(self.norm(h).to(h.dtype), shift, scale))  # (N, T, p p C)


# --------------------------------------------------------------------------------------------
# The backbone
# --------------------------------------------------------------------------------------------


class DiT(Backbone):
    """Interval-aware DiT ``F_theta(x_t, t, r, cond)`` on ``(N, C, H, W)`` with ``H, W`` multiples
    of the patch size (any such size: native resolution)."""

    supports_jvp = True
    #: ``(null_caption_length, D_text)``, with ``cross_attention = "gated"`` only.
    null_caption: Tensor

    def __init__(self, config: DiTConfig, *, spec: DataSpec) -> None:
        super().__init__()
        arch = config.resolve()
        _check_arch(arch, spec)
        _check_projector(config, arch)
        self.arch = arch
        self.in_channels = spec.shape[0]
        self.num_classes = spec.num_classes
        self.uses_text = spec.text
        D, p = arch.hidden_size, arch.patch_size
        self.patch_embed = nn.Conv2d(self.in_channels, D, kernel_size=p, stride=p)
        # docs/math.md section 9: decoupled embeddings, two independent embedders.
        self.phi_t = TimestepEmbedder(D)
        self.phi_dt = TimestepEmbedder(D)
        # Index num_classes is the null class (classifier-free guidance).
        self.class_embedding = nn.Embedding(self.num_classes + 1, D) if self.num_classes else None
        self.text_pool: nn.Module | None = None
        if spec.text and config.text_pooled:
            self.text_pool = TextPooling(spec.text_dim, D)
        self.caption_embedder: CaptionEmbedder | None = None
        block_text_dim = spec.text_dim if spec.text else 0
        if spec.text and config.caption_embedder == "norm-swiglu":
            self.caption_embedder = CaptionEmbedder(spec.text_dim, D)
            block_text_dim = D
        self.gated_text = spec.text and config.cross_attention == "gated"
        if self.gated_text:  # the null caption's encoder states, read by rows without a real token
            self.register_buffer("null_caption", torch.empty(config.null_caption_length, spec.text_dim))
        self.rope_pairs, self.rope_first_axis = config.rope_pairs, config.rope_first_axis
        self.blocks = nn.ModuleList(TiMBlock(D, arch.heads, arch.adaln_rank, block_text_dim, qk_norm=config.qk_norm,
                                             rope_pairs=config.rope_pairs, cross_attention=config.cross_attention)
                                    for _ in range(arch.depth))
        self.final = FinalLayer(D, p, self.in_channels)
        self.projector_depth = config.projector_depth
        self.projector: nn.Sequential | None = None
        if config.projector_out:  # representation alignment (REPA) head, read by forward_features
            P = config.projector_dim
            self.projector = nn.Sequential(nn.Linear(D, P), nn.SiLU(), nn.Linear(P, P), nn.SiLU(),
                                           nn.Linear(P, config.projector_out))

    def init_weights(self) -> None:
        """Reference initialisation: Xavier Linear layers, N(0, 0.02) embeddings, zero adaLN and
        output; deterministic given torch's global seed."""
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # like a Linear over flattened patches
        nn.init.zeros_(self.patch_embed.bias)
        self.phi_t.init_weights()
        self.phi_dt.init_weights()
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding.weight, std=0.02)
        if self.text_pool is not None:
            self.text_pool.init_weights()
        if self.caption_embedder is not None:
            self.caption_embedder.init_weights()
        if self.gated_text:
            nn.init.zeros_(self.null_caption)  # an imported model loads the encoded empty prompt
        for block in self.blocks:
            block.init_weights()
        self.final.init_weights()
        if self.projector is not None:
            for module in self.projector:
                if isinstance(module, nn.Linear):
                    xavier_linear(module)

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.blocks)

    def embed_condition(self, t: Tensor, r: Tensor, cond: Condition) -> tuple[Tensor, Tensor]:
        """``c = phi_t(t) + phi_dt(t - r) [+ class] [+ pooled text]`` and ``phi_dt(t - r)``, both ``(N, 1, D)``."""
        phi_dt = self.phi_dt(t - r)  # (N, D)
        c = self.phi_t(t) + phi_dt  # (N, D)
        if self.class_embedding is not None:
            labels = cond.labels
            if labels is None:  # no labels: every row is unconditional
                labels = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            c = c + self.class_embedding(labels)
        if self.text_pool is not None:
            c = c + self.text_pool(cond.text, cond.text_mask, t.shape[0], c)
        return c[:, None], phi_dt[:, None]

    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition, features: bool = False) -> Any:
        """``F(x_t, t, r, cond)`` ``(N, C, H, W)``; with ``features`` the pair of ``forward_features``
        (through ``__call__``, so module hooks such as FSDP's run as for a plain forward)."""
        if features and self.projector is None:
            raise ValueError("tim-dit has no projector: set backbone.projector_out > 0")
        F_out, z = self._forward(x_t, t, r, cond, features=features)
        return (F_out, z) if features else F_out

    def forward_features(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> tuple[Tensor, Tensor]:
        """``(F, z)``: the output of ``forward`` and the projector's ``(N, T, projector_out)`` reading
        of the hidden states after block ``projector_depth`` (representation alignment)."""
        F_out, z = self(x_t, t, r, cond, features=True)
        return F_out, z

    def token_grid(self, x_t: Tensor) -> tuple[int, int]:
        """``(h, w)``: the patch-token grid of an input shaped like ``x_t``."""
        p = self.arch.patch_size
        return x_t.shape[-2] // p, x_t.shape[-1] // p

    def _forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition, *,
                 features: bool) -> tuple[Tensor, Tensor | None]:
        N, C, H, W = self._check_input(x_t)
        p = self.arch.patch_size
        # Compute in the parameters' dtype (bf16 under FSDP mixed precision); t, r stay as given.
        x = x_t.to(self.patch_embed.weight.dtype)
        h = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, T, D), T = (H/p) (W/p)
        c, phi_dt = self.embed_condition(t, r, cond)  # (N, 1, D) each
        rope_dtype = torch.promote_types(h.dtype, torch.float32)
        rope = axial_rope(H // p, W // p, self.arch.hidden_size // self.arch.heads,
                          device=h.device, dtype=rope_dtype, pairs=self.rope_pairs,
                          first_axis=self.rope_first_axis)  # (T, d) each
        # (N, L, D_text), (N, L): only a text-to-image model reads the caption.
        text = self.text_states(cond, N) if self.uses_text else ()
        z = None
        for i, block in enumerate(self.blocks):
            h = block(h, c, phi_dt, rope, *text)  # (N, T, D); train.activation_checkpointing recomputes it
            if features and self.projector is not None and i + 1 == self.projector_depth:
                z = self.projector(h)  # (N, T, projector_out)
        h = self.final(h, c)  # (N, T, p p C)
        return self.unpatchify(h, H, W).to(x_t.dtype), z  # (N, C, H, W)

    def text_states(self, cond: Condition, n: int) -> tuple[Tensor | None, Tensor | None]:
        """``(text, text_mask)`` as the blocks read them: with ``cross_attention = "gated"`` rows
        without a real token (all-False mask: the empty caption, the null condition) hold the null
        caption's first ``L`` states (its first one without any text), as the official sampler and
        trainer pass ``null_cap_feat[:, :L]``; then the caption embedder, if any."""
        text, mask = cond.text, cond.text_mask
        if self.gated_text:
            null = self.null_caption  # (L_null, D_text)
            if text is None:
                text, mask = null[:1].expand(n, 1, -1), None
            else:
                if text.shape[1] > null.shape[0]:
                    raise ValueError(f"tim-dit: {text.shape[1]} text states, the null caption has "
                                     f"{null.shape[0]} (backbone.null_caption_length)")
                empty = ~mask.any(dim=1) if mask is not None else torch.zeros(n, dtype=torch.bool, device=text.device)
                text = torch.where(empty[:, None, None], null[: text.shape[1]].to(text.dtype), text)
        if self.caption_embedder is not None and text is not None:
            text = self.caption_embedder(text.to(self.caption_embedder.mlp.fc_in.weight.dtype))  # (N, L, D)
        return text, mask

    def unpatchify(self, h: Tensor, H: int, W: int) -> Tensor:
        """``(N, T, p p C)`` -> ``(N, C, H, W)`` (inverse of the row-major patch embedding)."""
        p, C = self.arch.patch_size, self.in_channels
        h = h.reshape(h.shape[0], H // p, W // p, p, p, C)  # (N, h, w, p, p, C)
        return torch.einsum("nhwpqc->nchpwq", h).reshape(h.shape[0], C, H, W)

    def _check_input(self, x_t: Tensor) -> tuple[int, int, int, int]:
        p = self.arch.patch_size
        if x_t.dim() != 4 or x_t.shape[1] != self.in_channels:
            raise ValueError(f"tim-dit expects (N, {self.in_channels}, H, W), got {tuple(x_t.shape)}")
        N, C, H, W = x_t.shape
        if H % p or W % p:
            raise ValueError(f"tim-dit: H and W must be multiples of the patch size {p}, got {H}x{W}")
        return N, C, H, W


def _check_projector(config: DiTConfig, arch: Preset) -> None:
    if config.projector_out and not 1 <= config.projector_depth <= arch.depth:
        raise ConfigError(f"backbone 'tim-dit': projector_depth must be in [1, {arch.depth}] (the block whose "
                          f"hidden states the projector reads), got {config.projector_depth}")


def _check_arch(arch: Preset, spec: DataSpec) -> None:
    if not spec.is_image:
        raise ConfigError(f"backbone 'tim-dit' needs image data (C, H, W), got a sample shape {spec.shape}; for points use --backbone mlp")
    if spec.text and spec.text_dim < 1:
        raise ConfigError("backbone 'tim-dit' with captions needs the text encoder's width (DataSpec.text_dim); "
                          "build it through genflow.components.build.build_backbone")
    if arch.hidden_size % arch.heads or (arch.hidden_size // arch.heads) % 4:
        raise ConfigError(f"backbone 'tim-dit': hidden_size {arch.hidden_size} must split into {arch.heads} "
                          "heads of a size divisible by 4 (2D RoPE)")
    if arch.depth < 1 or arch.patch_size < 1 or arch.adaln_rank < 1:
        raise ConfigError("backbone 'tim-dit': depth, patch_size and adaln_rank must be positive")


def build_dit(config: DiTConfig, *, spec: DataSpec) -> DiT:
    """Build the interval-aware DiT for ``spec`` (``in_channels = spec.shape[0]``)."""
    return DiT(config, spec=spec)
