"""Run small CPU workloads on one intra-op thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Temporarily ``torch.set_num_threads(1)``.

    For tiny tensors (the 2-D flow map) and small convnets (the shapes classifier) intra-op threads
    add more overhead than they save, several times over on a busy CPU; one thread also makes the
    classifier's training independent of the machine's core count.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
