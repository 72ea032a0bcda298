"""Random-state replay, so every pass of a training step sees the same random layers.

A derivative provider evaluates the network several times around the main (gradient) pass. Layers that
draw from the global RNG (dropout, stochastic depth) must draw the same masks in every pass, or ``dF/dt``
differentiates the noise: each pass starts from the RNG state the main pass starts from.
``preserved_rng`` runs a block without advancing the global RNG (for passes *before* the main pass);
``rng_snapshot`` + ``replayed_rng`` rerun a block from an earlier state (for passes *after* it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block without advancing the global CPU RNG (nor the CUDA RNG of ``device``)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        yield


def rng_snapshot(device: torch.device) -> list[Tensor]:
    """The global CPU RNG state (and the CUDA one of ``device``), for :func:`replayed_rng`."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


@contextlib.contextmanager
def replayed_rng(device: torch.device, snapshot: list[Tensor]) -> Iterator[None]:
    """Run a block from the RNG state of ``snapshot``, then restore the current state: a block run
    *after* the main pass sees the random state (dropout masks) that pass saw."""
    with preserved_rng(device):
        torch.set_rng_state(snapshot[0])
        if device.type == "cuda":
            torch.cuda.set_rng_state(snapshot[1], device)
        yield
