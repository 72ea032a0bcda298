"""Autoencoders that map images to store latents (``genflow prepare``) and back (sampling).

``identity`` keeps pixels: its latents are the ``uint8`` pixels and its shift / scale
(127.5, 1 / 127.5) map them to [-1, 1]; its ``channels`` (1 or 3) follow the source's images
unless set (``genflow prepare --ae-option channels=3`` stores grey images as RGB). ``diffusers-kl`` (``AutoencoderKL``, e.g. the SD VAE) and
``diffusers-dc`` (``AutoencoderDC``, DC-AE) wrap diffusers models and are registered only when
diffusers is installed (``pip install diffusers``).
"""

from __future__ import annotations

import abc
import copy
import importlib.util
from typing import Any, Literal, cast

import attrs
import torch
from torch import Tensor, nn

from genflow.config.domains import Domain
from genflow.errors import GenflowError
from genflow.registry import Component


class Autoencoder(abc.ABC):
    """Encodes ``uint8`` images ``(N, image_channels, H, W)`` to raw latents ``(N, C, H / f, W / f)``
    and decodes raw latents to pixels in [-1, 1]. Model space is ``(latents - shift) * scale`` per
    channel. ``genflow prepare`` repeats grey images to 3 channels for a 3-channel autoencoder."""

    name: str
    config: Any
    #: Spatial downsampling factor ``f``; image sides must be multiples of it.
    downsample: int = 1
    #: Channels of the images it encodes (3: RGB; 1: grey).
    image_channels: int = 3
    latent_channels: int = 3
    #: numpy dtype name of the stored latents.
    latent_dtype: str = "float32"

    @abc.abstractmethod
    def encode(self, images: Tensor) -> Tensor:
        """``images``: ``uint8`` ``(N, image_channels, H, W)``; returns raw latents on the CPU."""

    @abc.abstractmethod
    def decode(self, latents: Tensor) -> Tensor:
        """Raw latents ``(N, C, h, w)`` (any float dtype) -> pixels ``(N, image_channels, H, W)`` in [-1, 1]."""

    @abc.abstractmethod
    def shift_scale(self) -> tuple[list[float], list[float]]:
        """Per-channel ``(shift, scale)`` with model space ``(latents - shift) * scale``."""


@attrs.frozen(kw_only=True)
class IdentityConfig:
    """``channels``: 1 (grey) or 3 (RGB) image channels, stored as they are; 0 (the default) takes
    the source's (``genflow prepare`` resolves it, so a store records 1 or 3)."""

    channels: int = attrs.field(default=0, validator=Domain("0 (the source's), 1 or 3", lambda v: v in (0, 1, 3)))


class Identity(Autoencoder):
    """Pixels are the latents: ``uint8`` stores, exact round trips."""

    name = "identity"
    latent_dtype = "uint8"

    def __init__(self, config: IdentityConfig | None = None) -> None:
        self.config = config or IdentityConfig()
        if self.config.channels not in (0, 1, 3):
            raise GenflowError(f"autoencoder 'identity' channels = {self.config.channels}; allowed: 0 (the "
                               "source's), 1 (grey), 3 (RGB)")
        self.image_channels = self.latent_channels = self.config.channels or 3

    def for_channels(self, channels: int) -> Identity:
        """This autoencoder (a copy of the same class) with ``channels = 0`` resolved to ``channels``."""
        if self.config.channels:
            return self
        resolved = copy.copy(self)
        resolved.config = IdentityConfig(channels=channels)
        resolved.image_channels = resolved.latent_channels = channels
        return resolved

    def encode(self, images: Tensor) -> Tensor:
        return images.to(torch.uint8)

    def decode(self, latents: Tensor) -> Tensor:
        return (latents.float() / 127.5 - 1.0).clamp(-1.0, 1.0)

    def shift_scale(self) -> tuple[list[float], list[float]]:
        return [127.5] * self.latent_channels, [1.0 / 127.5] * self.latent_channels


@attrs.frozen(kw_only=True)
class DiffusersConfig:
    """``pretrained``: a hub id or a local directory (``save_pretrained`` output); ``sample``: draw
    from the KL posterior instead of taking its mode; ``batch_size``: images per encoder call."""

    pretrained: str = ""
    subfolder: str = ""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    sample: bool = False
    batch_size: int = 32


DEFAULT_PRETRAINED = {
    "diffusers-kl": "stabilityai/sd-vae-ft-ema",
    "diffusers-dc": "mit-han-lab/dc-ae-f32c32-in-1.0-diffusers",
}


class DiffusersAutoencoder(Autoencoder):
    """A diffusers ``AutoencoderKL`` (``kind="kl"``) or ``AutoencoderDC`` (``kind="dc"``)."""

    def __init__(self, module: nn.Module, *, kind: Literal["kl", "dc"], name: str, config: DiffusersConfig) -> None:
        self.module = module.eval().requires_grad_(False)
        self.kind = kind
        self.name = name
        self.config = config
        model_config: Any = module.config  # a diffusers config, not a submodule
        blocks = model_config.block_out_channels if kind == "kl" else model_config.encoder_block_out_channels
        self.downsample = 2 ** (len(blocks) - 1)
        self.latent_channels = int(model_config.latent_channels)
        self.device = _device(config.device)
        self.dtype = getattr(torch, config.dtype)
        self.module.to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        outputs = []
        for part in images.split(self.config.batch_size):
            x = (part.to(self.device, torch.float32) / 127.5 - 1.0).to(self.dtype)
            encoded = cast(Any, self.module).encode(x)  # diffusers' encode, not a submodule
            if self.kind == "dc":
                z = encoded.latent
            else:
                z = encoded.latent_dist.sample() if self.config.sample else encoded.latent_dist.mode()
            outputs.append(z.float().cpu())
        return torch.cat(outputs)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        pixels = cast(Any, self.module).decode(latents.to(self.device, self.dtype)).sample
        return pixels.float().clamp(-1.0, 1.0).to(latents.device)

    def shift_scale(self) -> tuple[list[float], list[float]]:
        scale = float(getattr(self.module.config, "scaling_factor", 1.0) or 1.0)
        shift = float(getattr(self.module.config, "shift_factor", 0.0) or 0.0)
        return [shift] * self.latent_channels, [scale] * self.latent_channels


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_diffusers(config: DiffusersConfig, *, kind: Literal["kl", "dc"], name: str) -> DiffusersAutoencoder:
    """Load a diffusers autoencoder from the hub or a local directory."""
    try:
        import diffusers
    except ImportError as exc:
        raise GenflowError(f"autoencoder '{name}' needs diffusers: pip install diffusers ({exc})") from None
    cls = diffusers.AutoencoderKL if kind == "kl" else diffusers.AutoencoderDC
    source = config.pretrained or DEFAULT_PRETRAINED[name]
    try:
        module = cls.from_pretrained(source, subfolder=config.subfolder or None)
    except Exception as exc:
        raise GenflowError(f"autoencoder '{name}' cannot load '{source}': {type(exc).__name__}: {exc}") from None
    return DiffusersAutoencoder(module, kind=kind, name=name, config=config)


def components() -> list[Component]:
    """The built-in autoencoder registrations (diffusers ones only when diffusers is installed)."""
    found = [
        Component(
            name="identity",
            config=IdentityConfig,
            build=lambda config: Identity(config),
            description="pixels as latents (uint8), model space [-1, 1]",
        )
    ]
    # find_spec, not import: importing diffusers takes seconds and registration must stay cheap.
    if importlib.util.find_spec("diffusers") is not None:
        for name, kind in (("diffusers-kl", "kl"), ("diffusers-dc", "dc")):
            found.append(
                Component(
                    name=name,
                    config=DiffusersConfig,
                    build=lambda config, _kind=kind, _name=name: build_diffusers(config, kind=_kind, name=_name),
                    description=f"diffusers Autoencoder{kind.upper()} (default {DEFAULT_PRETRAINED[name]})",
                )
            )
    return found


def build_builtin(name: str, config: dict[str, Any]) -> Autoencoder:
    """Rebuild the autoencoder a store names (for decoding), from the built-ins or installed plugins."""
    table = {c.name: c for c in components()}
    component = table.get(name)
    if component is None:
        from genflow.plugins import PluginManager  # plugins may register other autoencoders

        component = PluginManager().get("autoencoder", name)
    try:
        return component.build(component.config(**config))
    except TypeError as exc:
        raise GenflowError(f"store names autoencoder '{name}' with a config it does not accept: {exc}") from None
