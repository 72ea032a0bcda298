"""``toy2d``: seeded low-dimensional distributions with exact samplers (no download).

``gaussians8`` (eight Gaussians on a circle) and ``gaussian`` (one isotropic Gaussian, the
oracle of docs/math.md section 8) are Gaussian mixtures, so their marginal velocity is analytic
(:meth:`Toy2D.mixture`); ``checkerboard`` and ``rings`` are exact samplers only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from genflow.config.domains import positive
from genflow.interfaces import Batch, BatchLoader, Dataset, DataSpec


@attrs.frozen(kw_only=True)
class Toy2DConfig:
    """``kind``: which distribution; ``std``: component std (mixtures) or data std (gaussian)."""

    kind: Literal["gaussians8", "checkerboard", "rings", "gaussian"] = "gaussians8"
    radius: float = attrs.field(default=2.0, validator=positive(integer=False))
    std: float = attrs.field(default=0.2, validator=positive(integer=False))


@attrs.frozen(kw_only=True)
class GaussianMixture:
    """Isotropic Gaussian mixture with equal weights: ``means`` ``(K, D)``, shared ``std``."""

    means: Tensor
    std: float


class Toy2D(Dataset):
    """Fresh i.i.d. samples per batch, seeded by (seed, rank, batch index): exactly resumable."""

    def __init__(self, config: Toy2DConfig) -> None:
        self.config = config
        self.spec = DataSpec(shape=(2,))

    def mixture(self) -> GaussianMixture | None:
        """The distribution as a Gaussian mixture, or None when it is not one."""
        c = self.config
        if c.kind == "gaussian":
            return GaussianMixture(means=torch.zeros(1, 2, dtype=torch.float64), std=c.std)
        if c.kind == "gaussians8":
            angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
            means = c.radius * torch.stack([angles.cos(), angles.sin()], dim=1)
            return GaussianMixture(means=means, std=c.std)
        return None

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` samples ``(n, 2)`` in float32."""
        c = self.config
        mixture = self.mixture()
        if mixture is not None:
            k = torch.randint(len(mixture.means), (n,), generator=generator)
            noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
            return (mixture.means[k] + mixture.std * noise).float()
        if c.kind == "checkerboard":
            # 4x4 board on [-2, 2]^2, alternate cells filled.
            u = torch.rand(n, 2, generator=generator) * torch.tensor([2.0, 4.0]) - torch.tensor([0.0, 2.0])
            col_shift = (torch.floor(u[:, 1]) % 2 == 0).float()
            x0 = u[:, 0] - 2.0 + col_shift
            x0 = x0 + 2.0 * torch.randint(0, 2, (n,), generator=generator).float()
            x0 = torch.where(x0 >= 2.0, x0 - 4.0, x0)
            return torch.stack([x0, u[:, 1]], dim=1) * (c.radius / 2.0)
        # rings: three concentric circles of radius radius * (1/3, 2/3, 1), jittered by std / 4.
        ring = torch.randint(1, 4, (n,), generator=generator).float() / 3.0
        angle = torch.rand(n, generator=generator) * 2 * math.pi
        radius = c.radius * ring + (c.std / 4) * torch.randn(n, generator=generator)
        return torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)

    def loader(self, *, batch_size: int, rank: int, world_size: int, seed: int) -> BatchLoader:
        return Toy2DLoader(self, batch_size=batch_size, rank=rank, world_size=world_size, seed=seed)

    def reference(self, n: int, *, seed: int) -> Batch:
        generator = torch.Generator().manual_seed(seed)
        return Batch(x=self.draw(n, generator))


class Toy2DLoader(BatchLoader):
    """Global batch ``i`` is drawn from a generator seeded by ``(seed, i)``; rank ``k`` takes its
    ``k``-th slice, so any world size with the same global batch sees the same data."""

    def __init__(self, dataset: Toy2D, *, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.index = 0

    def __iter__(self) -> Iterator[Batch]:
        while True:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.index)
            self.index += 1
            x = self.dataset.draw(self.batch_size * self.world_size, generator)
            yield Batch(x=x[self.rank * self.batch_size : (self.rank + 1) * self.batch_size])

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.index = int(state["index"])
