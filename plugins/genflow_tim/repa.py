"""Representation alignment (REPA), the auxiliary loss of the official TiM recipe (arXiv 2509.04394,
after REPA, arXiv 2410.06940): the backbone's projector reads the hidden states after block
``projector_depth`` and is pulled towards a frozen image encoder's patch features of the clean
sample by cosine similarity, ``L_repa = mean_tokens (1 - cos(h_proj, sg(enc(x))))`` averaged over the
batch, added to the transition loss with weight ``repa_weight`` (1.0 in the official configs).

Encoders (``FrozenEncoder``), chosen by ``repa_encoder``:

- ``"random"``: a small frozen random patch encoder (seeded), for tests and CPU benchmarks;
- ``"dinov2"``: a DINOv2 from ``transformers`` (``repa_encoder_path``: a hub id or a local folder);
- ``"radio"``: NVIDIA RADIO (the official choice, RADIO-v2.5-B) through ``torch.hub`` from a local
  clone of its repository (``repa_encoder_repo``) and a weights file (``repa_encoder_path``).

The encoder sees the clean sample as pixels in ``[0, 1]``: data in pixel space (``repa_decoder =
"identity"``, model space ``[-1, 1]``) directly, latents through a registered autoencoder's decoder.
As in the official trainer the pixels are resized (bicubic) so the encoder's patch grid equals the
backbone's token grid.
"""

from __future__ import annotations

import abc
import pathlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genflow.errors import GenflowError

ENCODERS = ("random", "dinov2", "radio")


def alignment_loss(h_proj: Tensor, features: Tensor) -> Tensor:
    """``mean_n mean_tokens (1 - cos(h_proj, features))`` over the channel axis; both ``(N, T, D)``."""
    dtype = torch.promote_types(h_proj.dtype, torch.float32)
    cos = F.cosine_similarity(h_proj.to(dtype), features.to(dtype), dim=-1)  # (N, T)
    return (1 - cos).mean()


class FrozenEncoder(nn.Module, abc.ABC):
    """A frozen image encoder: pixels ``(N, 3, H, W)`` in ``[0, 1]`` -> patch features ``(N, T, dim)``
    with ``T = (H / patch) (W / patch)`` in row-major order."""

    patch: int
    dim: int

    @abc.abstractmethod
    def features(self, pixels: Tensor) -> Tensor:
        """Patch features of ``pixels`` (no gradients)."""


class RandomEncoder(FrozenEncoder):
    """A seeded random patch encoder (patch embedding -> GELU MLP), frozen: a stand-in with the
    interface and cost profile of a real one for tests and benchmarks."""

    def __init__(self, dim: int, patch: int = 16, width: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.patch, self.dim = patch, dim
        self.embed = nn.Conv2d(3, width, kernel_size=patch, stride=patch)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in (self.embed, self.mlp[1], self.mlp[3]):
                assert isinstance(module, nn.Conv2d | nn.Linear)
                module.reset_parameters()
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def features(self, pixels: Tensor) -> Tensor:
        h = self.embed(pixels.to(self.embed.weight.dtype) * 2 - 1).flatten(2).transpose(1, 2)  # (N, T, width)
        return self.mlp(h)


class DinoV2Encoder(FrozenEncoder):
    """DINOv2 patch tokens (the last hidden state without the class token), ImageNet-normalised input."""

    def __init__(self, path: str) -> None:
        super().__init__()
        try:
            from transformers import AutoModel
        except ImportError as exc:
            raise GenflowError(f"objective.repa_encoder = 'dinov2' needs transformers: pip install transformers "
                               f"({exc})") from None
        try:
            self.model = AutoModel.from_pretrained(path).requires_grad_(False).eval()
        except Exception as exc:  # a missing folder, no network, ...: one line
            raise GenflowError(f"objective.repa_encoder_path '{path}': cannot load DINOv2 "
                               f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
        config: Any = self.model.config
        self.patch, self.dim = int(config.patch_size), int(config.hidden_size)
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def features(self, pixels: Tensor) -> Tensor:
        x = (pixels - self.mean) / self.std
        return self.model(pixel_values=x).last_hidden_state[:, 1:]  # drop the class token


class RadioEncoder(FrozenEncoder):
    """RADIO's spatial features (``model(x) -> (summary, spatial)``), as the official trainer uses."""

    def __init__(self, repo: str, path: str) -> None:
        super().__init__()
        if not repo or not pathlib.Path(repo).is_dir():
            raise GenflowError(f"objective.repa_encoder_repo '{repo}': give a local clone of NVlabs/RADIO "
                               "(torch.hub loads 'radio_model' from it), or objective.repa_weight=0 to train without REPA")
        if not path or not pathlib.Path(path).is_file():
            raise GenflowError(f"objective.repa_encoder_path '{path}': give the RADIO weights file "
                               "(e.g. radio-v2.5-b_half.pth.tar)")
        try:
            self.model = torch.hub.load(repo, "radio_model", source="local", version=path, progress=False)
        except Exception as exc:
            raise GenflowError(f"RADIO from '{repo}' with '{path}' failed to load "
                               f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
        self.model.requires_grad_(False).eval()
        self.patch = int(getattr(self.model, "patch_size", 16))
        self.dim = int(getattr(self.model, "embed_dim", 768))

    @torch.no_grad()
    def features(self, pixels: Tensor) -> Tensor:
        _, spatial = self.model(pixels)
        return spatial


def build_encoder(kind: str, *, dim: int, path: str = "", repo: str = "") -> FrozenEncoder:
    """The frozen encoder ``kind`` (one of ``ENCODERS``); ``dim`` sizes the random one."""
    if kind == "random":
        return RandomEncoder(dim)
    if kind == "dinov2":
        return DinoV2Encoder(path)
    if kind == "radio":
        return RadioEncoder(repo, path)
    raise GenflowError(f"objective.repa_encoder '{kind}': allowed: {', '.join(ENCODERS)}")


class RepresentationAlignment:
    """The REPA loss of one run: the encoder's features of the clean batch against the projection."""

    def __init__(self, encoder: FrozenEncoder, *, decoder: Any = None) -> None:
        self.encoder = encoder
        self.decoder = decoder  # None: model space is pixels in [-1, 1]

    def target(self, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Encoder features ``(N, h w, dim)`` of the clean samples ``x`` (model space) on the token
        ``grid`` ``(h, w)`` of the backbone."""
        self.encoder.to(x.device)
        with torch.no_grad():
            pixels = x if self.decoder is None else self.decoder(x)  # [-1, 1]
            pixels = ((pixels.float() + 1) / 2).clamp(0, 1)
            size = (grid[0] * self.encoder.patch, grid[1] * self.encoder.patch)
            if tuple(pixels.shape[-2:]) != size:
                pixels = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False)
            return self.encoder.features(pixels)

    def loss(self, h_proj: Tensor, x: Tensor, grid: tuple[int, int]) -> Tensor:
        features = self.target(x, grid)
        if features.shape != h_proj.shape:
            raise GenflowError(f"REPA: the encoder gives features {tuple(features.shape)}, the backbone's projector "
                               f"{tuple(h_proj.shape)}; set backbone.projector_out to the encoder's width "
                               f"{features.shape[-1]}")
        return alignment_loss(h_proj, features)
