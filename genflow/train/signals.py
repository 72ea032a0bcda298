"""Graceful stop: SIGTERM / SIGINT ask the trainer to checkpoint and exit after the current step."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

import torch
import torch.distributed as dist

from genflow.train.distributed import World


class StopRequest:
    """Installs handlers for SIGTERM and SIGINT while active; ``signum`` is the first signal seen."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def agreed(self, world: World) -> int:
        """The signal any rank received (0 if none); every rank gets the same answer."""
        if not world.distributed:
            return self.signum
        flag = torch.tensor([self.signum], device=world.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())
