"""The ``latent-space`` dataset: the latent space of a model whose weights came from elsewhere
(``genflow import``), so its run folder samples, evaluates and fine-tunes without its training data.

It knows the sample ``shape``, the ``num_classes`` and the ``autoencoder`` that decodes model-space
latents (``latents = x / scale + shift`` with the autoencoder's own ``shift_scale``). Training
samples and reference samples come from an optional latent store (``url``), whose spec must match:
fine-tune an imported run with ``genflow train --resume --run-dir RUN data.url=STORE``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from genflow.config.domains import each, non_negative, positive, text
from genflow.errors import ConfigError, GenflowError
from genflow.interfaces import Batch, BatchLoader, Dataset, DataSpec


@attrs.frozen(kw_only=True)
class LatentSpaceConfig:
    """``shape``: one sample ``(C, H, W)``; ``num_classes``: class labels (0: none; the null class is
    ``num_classes``); ``autoencoder``: a registered autoencoder name (``identity``: samples stay in
    model space) with its ``pretrained`` hub id or folder; ``url``: a latent store with training data;
    ``text``: the model is caption-conditioned (its store then holds captions)."""

    shape: tuple[int, ...] = attrs.field(default=(4, 32, 32), validator=each(positive(), min_len=3, max_len=3))
    num_classes: int = attrs.field(default=0, validator=non_negative())
    autoencoder: str = attrs.field(default="identity", validator=text())
    pretrained: str = attrs.field(default="", validator=text(empty=True))
    url: str = attrs.field(default="", validator=text(empty=True))
    text: bool = False

    @shape.validator
    def _check_shape(self, _: object, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be (C, H, W) with positive sizes, got {list(shape)}")


class LatentSpace(Dataset):
    """A model's latent space; training data only through ``config.url``."""

    def __init__(self, config: LatentSpaceConfig) -> None:
        self.config = config
        self.spec = DataSpec(shape=tuple(config.shape), num_classes=config.num_classes, text=config.text)
        self.autoencoder: Any = None
        self.store: Dataset | None = None
        self._text_fn: Any = None
        if config.url:
            from genflow.data.dataset import StoreConfig, build_store

            condition = "text" if config.text else "labels" if config.num_classes else "none"
            self.store = build_store(StoreConfig(url=config.url, condition=condition))
            if self.store.spec != self.spec:
                raise ConfigError(f"data.url '{config.url}': the store holds {self.store.spec}, this model's latent "
                                  f"space is {self.spec}")

    @property
    def text_fn(self) -> Any:
        """``captions -> (text, text_mask)`` of the run's text encoder (set by ``genflow.components.build``)."""
        return self._text_fn

    @text_fn.setter
    def text_fn(self, fn: Any) -> None:
        self._text_fn = fn
        if self.store is not None:
            self.store.text_fn = fn  # type: ignore[attr-defined]

    def _training_store(self) -> Dataset:
        if self.store is None:
            raise GenflowError("data 'latent-space' has no training samples: set data.url to a latent store of "
                               f"shape {list(self.config.shape)} (genflow prepare) to fine-tune or to compare")
        return self.store

    def loader(self, *, batch_size: int, rank: int, world_size: int, seed: int) -> BatchLoader:
        return self._training_store().loader(batch_size=batch_size, rank=rank, world_size=world_size, seed=seed)

    def reference(self, n: int, *, seed: int) -> Batch:
        return self._training_store().reference(n, seed=seed)

    def decode(self, x: Tensor) -> Tensor:
        """Model space -> pixels in [-1, 1] through the autoencoder (``identity``: unchanged)."""
        if self.config.autoencoder == "identity":
            return x
        if self.autoencoder is None:
            from genflow.data.autoencoders import build_builtin

            options = {"pretrained": self.config.pretrained} if self.config.pretrained else {}
            self.autoencoder = build_builtin(self.config.autoencoder, options)
        shift, scale = (torch.tensor(v, dtype=x.dtype, device=x.device) for v in self.autoencoder.shift_scale())
        return self.autoencoder.decode(x / scale.view(-1, 1, 1) + shift.view(-1, 1, 1))


def build(config: LatentSpaceConfig, **_: object) -> LatentSpace:
    """Registry factory of the ``latent-space`` dataset."""
    return LatentSpace(config)
