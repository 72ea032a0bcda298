"""torch.distributed set-up (torchrun env vars), device choice and FSDP2 wrapping."""

from __future__ import annotations

import datetime
import os
import sys
from typing import NoReturn

import attrs
import torch
import torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from genflow.errors import GenflowError
from genflow.interfaces import Backbone

#: Exit code of a rank that lost contact with another one (which died or hangs).
LOST_RANK_EXIT = 3


@attrs.frozen(kw_only=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(choice: str, local_rank: int) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a clear error."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise GenflowError("train.device = 'cuda' but no CUDA device is available; use 'cpu' or 'auto'")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


#: Minutes a collective waits for the other ranks by default: on CPU (gloo), and on GPUs (NCCL),
#: where the first steps of a compiled model may take several minutes.
DEFAULT_TIMEOUT_MINUTES = {"cpu": 2.0, "cuda": 10.0}


def timeout_minutes(setting: float, device: torch.device) -> float:
    """``train.dist_timeout_minutes``, or (0) the default of ``device``'s type."""
    return setting if setting > 0 else DEFAULT_TIMEOUT_MINUTES.get(device.type, 10.0)


def init_world(device_choice: str, timeout: float = 0.0) -> World:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on CPU.

    ``timeout`` (minutes; 0: :data:`DEFAULT_TIMEOUT_MINUTES`) bounds every wait for another rank:
    joining the group and each collective. A rank that died or hangs makes the others fail with
    an error after at most that long instead of waiting for good.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        minutes = timeout_minutes(timeout, device)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_world() -> None:
    """Leave the process group (every rank, after its last collective)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> NoReturn:
    """End a rank's process after its last collective: leave the process group, flush the standard
    streams, and exit without the interpreter's teardown.

    gloo's worker threads drop a finished collective's work after its caller has moved on (a
    final barrier holds the works still in flight when it was queued). One that drops tensors
    Python has seen while the interpreter finalizes needs the GIL, which finalization no longer
    hands out, and the process aborts ("terminate called without an active exception": about 1
    multi-rank run in 20 before the final barrier, still seen in CI after it). Everything a run
    writes is closed when ``Trainer.run`` returns, so the skipped teardown loses nothing; atexit
    handlers do not run (plugins finish their work in the ``genflow_train_end`` hook).
    """
    shutdown_world()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class LostRankError(RuntimeError):
    """A collective inside a larger operation (a checkpoint save) lost another rank."""


def is_lost_rank(exc: BaseException) -> bool:
    """Whether ``exc`` says a collective or the rendezvous lost another rank (its process died,
    its connection closed, or it did not answer within the timeout). Looks through the exceptions
    DCP gathers from each rank and through ``__cause__``."""
    if isinstance(exc, (dist.DistError, LostRankError)):
        return True
    wrapped = [failure[0] for failure in getattr(exc, "failures", {}).values()]  # a CheckpointException
    if exc.__cause__ is not None:
        wrapped.append(exc.__cause__)
    if any(is_lost_rank(inner) for inner in wrapped if isinstance(inner, BaseException)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in text for marker in ("gloo", "Connection closed", "Connection reset", "NCCL", "timed out"))


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shard(backbone: Backbone, *, bf16_params: bool) -> Backbone:
    """FSDP2: ``fully_shard`` each unit the backbone declares, then the root.

    With ``bf16_params`` the all-gathered parameters and the compute are bf16 while gradients are
    reduced in fp32 and the sharded master weights stay fp32.
    """
    # cast_forward_inputs=False: t and r must stay fp32 (bf16 spacing near t = 0.7 is ~0.004, the
    # size of DDE's epsilon); backbones cast x_t to their parameter dtype themselves.
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32,
                                  cast_forward_inputs=False) if bf16_params else MixedPrecisionPolicy()
    for unit in backbone.fsdp_units():
        fully_shard(unit, mp_policy=policy)
    fully_shard(backbone, mp_policy=policy)
    return backbone


def all_reduce_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.AVG if value.device.type == "cuda" else dist.ReduceOp.SUM)
        if value.device.type != "cuda":
            value /= world.world_size
    return value


def broadcast_from_main(value: torch.Tensor, world: World) -> torch.Tensor:
    """Rank 0's ``value`` on every rank (so decisions based on local clocks agree)."""
    if world.distributed:
        value = value.to(world.device)
        dist.broadcast(value, src=0)
    return value
