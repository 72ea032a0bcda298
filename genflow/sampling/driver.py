"""The sampling driver: fixed noise and conditions, one sampler call per step count."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from genflow.errors import GenflowError
from genflow.interfaces import Backbone, Condition, Dataset, DataSpec, Sampler


def sample_conditions(spec: DataSpec, num: int, device: torch.device, class_label: int | None = None) -> Condition:
    """Labels cycling through every class (or all ``class_label``); empty for unlabelled data."""
    if not spec.num_classes:
        return Condition()
    if class_label is not None:
        labels = torch.full((num,), class_label, dtype=torch.long, device=device)
    else:
        labels = torch.arange(num, device=device) % spec.num_classes
    return Condition(labels=labels)


def preview_conditions(dataset: Dataset, num: int, seed: int, device: torch.device) -> Condition | None:
    """Conditions of a run's preview samples (the trainer's grids): the captions of ``num`` real
    samples for caption-conditioned data, else None (``generate``'s labels cycling through classes)."""
    if not dataset.spec.text:
        return None
    return dataset.reference(num, seed=seed).cond.to(device)


def text_conditions(captions: Sequence[str], tokenize: Callable[[list[str]], tuple[Tensor, Tensor]],
                    device: torch.device) -> Condition:
    """Token ids and masks of ``captions`` (one row each) from the run's tokenizer ``tokenize``."""
    ids, mask = tokenize(list(captions))
    return Condition(text=ids.to(device), text_mask=mask.to(device))


def fixed_noise(spec: DataSpec, num: int, seed: int, device: torch.device) -> Tensor:
    """The same noise for every step count (drawn on the CPU so it is device-independent)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((num, *spec.shape), generator=generator).to(device)


@torch.no_grad()
def generate(backbone: Backbone, sampler: Sampler, spec: DataSpec, *, steps: list[int] | tuple[int, ...],
             num: int, seed: int, device: torch.device, guidance: float = 1.0,
             cond: Condition | None = None, batch_size: int = 1024,
             on_chunk: Callable[[int], None] | None = None) -> dict[int, Tensor]:
    """``{steps: samples}`` from the same noise and conditions, in chunks of ``batch_size``.
    ``on_chunk(n)`` is called after each chunk with its samples x steps (for a progress bar: the
    whole call is ``num * sum(steps)``). A non-finite ``guidance``, no step count or a non-positive
    one is a ``GenflowError``."""
    if not math.isfinite(guidance):
        raise GenflowError(f"guidance = {guidance}: expected a finite number (1 = off)")
    if not steps or any(n < 1 for n in steps) or num < 1 or batch_size < 1:
        raise GenflowError(f"sampling needs step counts >= 1 (got {list(steps)}), num >= 1 (got {num}) "
                           f"and batch_size >= 1 (got {batch_size})")
    noise = fixed_noise(spec, num, seed, device)
    cond = cond if cond is not None else sample_conditions(spec, num, device)
    was_training = backbone.training
    backbone.eval()
    out: dict[int, Tensor] = {}
    try:
        for n_steps in steps:
            chunks = []
            for start in range(0, num, batch_size):
                rows = torch.arange(start, min(num, start + batch_size), device=device)
                generator = torch.Generator(device).manual_seed(seed + 1 + start)
                chunks.append(sampler.sample(backbone, noise[rows], cond.index(rows), steps=n_steps,
                                             guidance=guidance, generator=generator))
                if on_chunk is not None:
                    on_chunk(n_steps * rows.numel())
            out[n_steps] = torch.cat(chunks)
    finally:
        backbone.train(was_training)
    return out
