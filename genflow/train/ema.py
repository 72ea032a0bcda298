"""Exponential moving averages of the (possibly sharded) parameters, one per decay (torch-ema)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch_ema import ExponentialMovingAverage


class EMA:
    """Several EMAs of one model. Shadow parameters have the parameters' sharding (DTensors under
    FSDP2), so ``state_dict`` is resharded by ``torch.distributed.checkpoint`` like the model."""

    def __init__(self, model: nn.Module, decays: tuple[float, ...]) -> None:
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        params: list[torch.Tensor] = [p for p in model.parameters() if p.requires_grad]
        self.model, self.params = model, params
        with torch.no_grad():  # torch-ema 0.3 needs no-grad around its copies
            self.averages = {decay: ExponentialMovingAverage(params, decay=decay) for decay in decays}

    @property
    def decays(self) -> list[float]:
        return list(self.averages)

    @torch.no_grad()
    def update(self) -> None:
        """``s <- s + (1 - d) (p - s)`` with torch-ema's warm-up ``d = min(decay, (1 + n) / (10 + n))``:
        ``ExponentialMovingAverage.update``'s arithmetic (equal up to rounding) as one multi-tensor
        ``lerp`` per decay, one pass over shadows and parameters instead of torch-ema's three
        kernels per parameter.
        """
        for average in self.averages.values():
            average.num_updates = (average.num_updates or 0) + 1
            decay = min(average.decay, (1 + average.num_updates) / (10 + average.num_updates))
            torch._foreach_lerp_(average.shadow_params, self.params, 1.0 - decay)

    def nonfinite(self) -> list[str]:
        """``"<decay>/<param name>"`` of every shadow holding a NaN or an infinity (this rank's
        shards only: callers agree across ranks)."""
        return [f"{decay}/{name}" for decay, average in self.averages.items()
                for name, shadow in zip(self.names, average.shadow_params, strict=True)
                if not bool(torch.isfinite(local_shard(shadow)).all())]

    @contextlib.contextmanager
    def applied(self, decay: float | None = None) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights (the first decay unless named) into the model."""
        average = self.averages[decay if decay is not None else self.decays[0]]
        with torch.no_grad():
            average.store()
            average.copy_to()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                average.restore()

    def state_dict(self) -> dict[str, Any]:
        """Flat ``{"<decay>/<param name>": shadow, "<decay>/num_updates": n}`` for DCP."""
        state: dict[str, Any] = {}
        for decay, average in self.averages.items():
            for name, shadow in zip(self.names, average.shadow_params, strict=True):
                state[f"{decay}/{name}"] = shadow
            state[f"{decay}/num_updates"] = torch.tensor(average.num_updates or 0)
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """In-place load of a state produced by ``state_dict`` (DCP fills the tensors in place)."""
        for decay, average in self.averages.items():
            for name, shadow in zip(self.names, average.shadow_params, strict=True):
                loaded = state[f"{decay}/{name}"]
                if loaded is not shadow:
                    shadow.copy_(loaded)
            average.num_updates = int(state[f"{decay}/num_updates"])


def local_shard(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (FSDP2), the tensor itself otherwise."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if to_local is not None else tensor
