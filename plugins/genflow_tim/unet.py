"""``unet``: a small convolutional UNet ``F_theta(x_t, t, r, cond)`` for CPU-sized image work.

GroupNorm + SiLU residual blocks with FiLM conditioning (scale, shift) from the decoupled
embedding ``c = phi_t(t) + phi_dt(t - r) [+ class]`` of docs/math.md section 9 (two independent
embedders of raw ``t`` in ``[0, 1]``, a class embedding with a null class), optional
self-attention at the lowest resolution, and a zero-initialised output convolution (``F = 0`` at
initialisation). With captions (``DataSpec.text``) every residual block below the top level and
the middle block is followed by cross-attention to the text states (key padding masks, a learned
null token; :mod:`genflow_tim.cross_attention`) and the pooled caption joins ``c``
(``text_pooled``); none of it exists without captions. Every layer supports forward-mode AD, so ``torch.func.jvp`` works (attention
through the math SDPA backend).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow.components.nn import TimestepEmbedder
from genflow.config.domains import each, positive
from genflow.errors import ConfigError
from genflow.interfaces import Backbone, Condition, DataSpec

#: GroupNorm groups; every channel count must be divisible by it.
GROUPS = 8


@attrs.frozen(kw_only=True)
class UNetConfig:
    """``channels``: width per resolution level (each level halves H and W); ``blocks_per_level``:
    residual blocks per level on the way down and up; ``attention``: self-attention after the middle
    block (lowest resolution); ``text_pooled``: with captions, add the pooled caption to ``c``; ``patch``: space-to-depth factor of the stem (``p x p`` pixels become
    one position with ``C p^2`` channels, undone at the output), which divides the cost by ``p^2``."""

    channels: tuple[int, ...] = attrs.field(default=(32, 64, 128), validator=each(positive()))
    patch: int = attrs.field(default=2, validator=positive())
    blocks_per_level: int = attrs.field(default=1, validator=positive())
    embedding_dim: int = attrs.field(default=128, validator=positive())
    attention: bool = True
    text_pooled: bool = True


class ResBlock(nn.Module):
    """``skip(x) + conv(SiLU(FiLM(GN(conv(SiLU(GN(x)))), c)))``, FiLM: ``h (1 + scale) + shift``."""

    def __init__(self, in_ch: int, out_ch: int, embedding_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(embedding_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(GROUPS, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (N, out, H, W)
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)  # (N, out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))  # (N, out, H, W)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``H W`` positions, residual, zero-initialised output."""

    def __init__(self, ch: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, ch // head_dim)
        self.norm = nn.GroupNorm(GROUPS, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        N, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(N, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (N, heads, H W, d) each
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, H W, d)
        return x + self.proj(out.transpose(-1, -2).reshape(N, C, H, W))  # (N, C, H, W)


class ConvCrossAttention(nn.Module):
    """``x + CrossAttention(GN(x) as H W tokens, text)``: image positions attend to the caption."""

    def __init__(self, ch: int, text_dim: int, head_dim: int = 32) -> None:
        super().__init__()
        from genflow_tim.cross_attention import TextCrossAttention

        self.norm = nn.GroupNorm(GROUPS, ch)
        self.attn = TextCrossAttention(ch, text_dim, max(1, ch // head_dim))

    def forward(self, x: Tensor, text: Tensor | None, text_mask: Tensor | None) -> Tensor:
        N, C, H, W = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (N, H W, C)
        return x + self.attn(tokens, text, text_mask).transpose(1, 2).reshape(N, C, H, W)


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)  # (N, ch, H/2, W/2)


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 convolution to the next level's width (``in_ch -> out_ch``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (N, out_ch, 2H, 2W)


class UNet(Backbone):
    """A UNet over ``(N, C, H, W)`` with ``H, W`` divisible by ``2^(levels - 1)``."""

    supports_jvp = True

    def __init__(self, config: UNetConfig, *, spec: DataSpec) -> None:
        super().__init__()
        _check(config, spec)
        chs, e, n = config.channels, config.embedding_dim, config.blocks_per_level
        self.in_channels = spec.shape[0]
        self.patch = config.patch
        self.num_classes = spec.num_classes
        self.levels = len(chs)
        # docs/math.md section 9: decoupled embeddings of raw t and of t - r, plus a class with a null class.
        self.phi_t = TimestepEmbedder(e)
        self.phi_dt = TimestepEmbedder(e)
        self.class_embedding = nn.Embedding(self.num_classes + 1, e) if self.num_classes else None
        self.conv_in = nn.Conv2d(self.in_channels * self.patch**2, chs[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = chs[0]
        for i, out in enumerate(chs):
            self.down.append(nn.ModuleList(ResBlock(ch if j == 0 else out, out, e) for j in range(n)))
            ch = out
            self.downsample.append(Downsample(ch) if i < self.levels - 1 else nn.Identity())
        self.mid = ResBlock(ch, ch, e)
        self.mid_attn = SelfAttention(ch) if config.attention else nn.Identity()
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.levels)):
            # Each up block reads the matching down block's output (chs[i] channels) as a skip.
            self.up.append(nn.ModuleList(ResBlock(2 * chs[i], chs[i], e) for _ in range(n)))
            self.upsample.append(Upsample(chs[i], chs[i - 1]) if i > 0 else nn.Identity())
        ch = chs[0]
        self.text_layers: _TextLayers | None = _TextLayers(config, spec) if spec.text else None
        self.norm_out = nn.GroupNorm(GROUPS, ch)
        self.conv_out = nn.Conv2d(ch, self.in_channels * self.patch**2, 3, padding=1)

    def init_weights(self) -> None:
        """PyTorch's default layer initialisation, zero output convolution and zero attention
        output; deterministic given torch's global seed."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.Embedding)):
                module.reset_parameters()
        for conv in (self.conv_out, getattr(self.mid_attn, "proj", None)):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        if self.text_layers is not None:
            self.text_layers.init_weights()

    def fsdp_units(self) -> list[nn.Module]:
        # Residual blocks (each has a forward of its own, so FSDP2's hooks fire); the rest stays in the root.
        return [m for m in self.modules() if isinstance(m, ResBlock)]

    def embed_condition(self, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        """``SiLU(phi_t(t) + phi_dt(t - r) [+ class])``, ``(N, e)``; no labels means the null class."""
        c = self.phi_t(t) + self.phi_dt(t - r)  # (N, e)
        if self.class_embedding is not None:
            labels = cond.labels
            if labels is None:
                labels = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            c = c + self.class_embedding(labels)
        if self.text_layers is not None and self.text_layers.pool is not None:
            c = c + self.text_layers.pool(cond.text, cond.text_mask, t.shape[0], c)
        return F.silu(c)

    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        self._check_input(x_t)
        c = self.embed_condition(t, r, cond)  # (N, e)
        h = F.pixel_unshuffle(x_t.to(self.conv_in.weight.dtype), self.patch)  # (N, C p^2, H / p, W / p)
        h = self.conv_in(h)  # (N, ch0, H / p, W / p), in the parameters' dtype
        text = self.text_layers
        skips = []
        for i, (blocks, downsample) in enumerate(zip(self.down, self.downsample, strict=True)):
            for j, block in enumerate(blocks):
                h = block(h, c)
                if text is not None:
                    h = text.attend(f"down{i}_{j}", h, cond)
                skips.append(h)
            h = downsample(h)  # halves H, W except at the lowest level
        h = self.mid(h, c)
        if text is not None:
            h = text.attend("mid", h, cond)
        h = self.mid_attn(h)  # (N, ch_last, H / 2^(L-1), W / 2^(L-1))
        for i, (blocks, upsample) in enumerate(zip(self.up, self.upsample, strict=True)):
            for j, block in enumerate(blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), c)
                if text is not None:
                    h = text.attend(f"up{self.levels - 1 - i}_{j}", h, cond)
            h = upsample(h)  # doubles H, W except at the top level
        out = self.conv_out(F.silu(self.norm_out(h)))  # (N, C p^2, H / p, W / p)
        return F.pixel_shuffle(out, self.patch).to(x_t.dtype)  # (N, C, H, W)

    def _check_input(self, x_t: Tensor) -> None:
        factor = self.patch * 2 ** (self.levels - 1)
        if x_t.dim() != 4 or x_t.shape[1] != self.in_channels:
            raise ValueError(f"unet expects (N, {self.in_channels}, H, W), got {tuple(x_t.shape)}")
        H, W = x_t.shape[2:]
        if H % factor or W % factor:
            raise ValueError(f"unet: H and W must be divisible by {factor}, got {H}x{W}")


def _check(config: UNetConfig, spec: DataSpec) -> None:
    if not spec.is_image:
        raise ConfigError(f"backbone 'unet' needs image data (C, H, W), got a sample shape {spec.shape}; for points use --backbone mlp")
    if spec.text and spec.text_dim < 1:
        raise ConfigError("backbone 'unet' with captions needs the text encoder's width (DataSpec.text_dim); "
                          "build it through genflow.components.build.build_backbone")
    if not config.channels or any(ch <= 0 or ch % GROUPS for ch in config.channels):
        raise ConfigError(f"backbone.channels must be positive multiples of {GROUPS}, got {config.channels}")
    if config.patch < 1:
        raise ConfigError(f"backbone.patch must be >= 1, got {config.patch}")
    if config.blocks_per_level < 1 or config.embedding_dim < 2:
        raise ConfigError("backbone.blocks_per_level must be >= 1 and backbone.embedding_dim >= 2")


class _TextLayers(nn.Module):
    """The UNet's text layers: cross-attention after each residual block of levels ``1..L-1`` (down
    and up) and after the middle block, keyed ``down{level}_{block}`` / ``up{level}_{block}`` /
    ``mid``; the top level (largest maps) has none, where attention over every pixel costs most."""

    def __init__(self, config: UNetConfig, spec: DataSpec) -> None:
        super().__init__()
        from genflow_tim.cross_attention import TextPooling

        chs, n = config.channels, config.blocks_per_level
        levels = range(1, len(chs)) if len(chs) > 1 else range(0)
        self.cross = nn.ModuleDict()
        for level in levels:
            for j in range(n):
                self.cross[f"down{level}_{j}"] = ConvCrossAttention(chs[level], spec.text_dim)
                self.cross[f"up{level}_{j}"] = ConvCrossAttention(chs[level], spec.text_dim)
        self.cross["mid"] = ConvCrossAttention(chs[-1], spec.text_dim)
        self.pool = TextPooling(spec.text_dim, config.embedding_dim) if config.text_pooled else None

    def init_weights(self) -> None:
        for layer in self.cross.values():
            layer.attn.init_weights()
        if self.pool is not None:
            self.pool.init_weights()

    def attend(self, key: str, h: Tensor, cond: Condition) -> Tensor:
        if key not in self.cross:  # the top level has no cross-attention
            return h
        return self.cross[key](h, cond.text, cond.text_mask)


def build_unet(config: UNetConfig, *, spec: DataSpec) -> UNet:
    """Build the UNet for ``spec`` (``in_channels = spec.shape[0]``)."""
    return UNet(config, spec=spec)
