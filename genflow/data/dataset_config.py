"""The configs of the ``store`` and ``shapes`` datasets (:mod:`genflow.data.dataset`), in a module
of their own: registering the datasets (and so every command's start) needs the configs, not
zarr and the readers they are built with."""

from __future__ import annotations

from typing import Literal

import attrs

from genflow.config.domains import non_negative, text
from genflow.data.shapes import ShapesConfig

__all__ = ["ConditionKind", "Normalize", "ShapesDatasetConfig", "StoreConfig"]

Normalize = Literal["autoencoder", "stats", "none"]
ConditionKind = Literal["auto", "labels", "text", "none"]


@attrs.frozen(kw_only=True)
class StoreConfig:
    """``url``: the store (path, memory://, zip::, s3://, ...); ``condition``: what batches carry;
    ``normalize``: model space (see ``ReadOptions``); ``flip``: random mirroring when the store has
    ``latents_flip``; ``window``: chunks shuffled together; ``num_workers``: DataLoader workers."""

    url: str = attrs.field(default="", validator=text(empty=True))
    condition: ConditionKind = "auto"
    normalize: Normalize = "autoencoder"
    flip: bool = False
    window: int = attrs.field(default=4, validator=non_negative())
    num_workers: int = attrs.field(default=0, validator=non_negative())


@attrs.frozen(kw_only=True)
class ShapesDatasetConfig(ShapesConfig):
    """The ``shapes`` generator's fields plus the reading fields of ``StoreConfig``."""

    condition: ConditionKind = "auto"
    normalize: Normalize = "autoencoder"
    window: int = attrs.field(default=4, validator=non_negative())
    num_workers: int = attrs.field(default=0, validator=non_negative())
