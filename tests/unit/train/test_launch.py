"""The pieces of ``genflow train --nproc`` and of run logging that need no processes."""

from __future__ import annotations

import json
import signal

from torch.distributed.checkpoint.api import CheckpointException

from genflow.cli import _argv_without_nproc
from genflow.train.distributed import LOST_RANK_EXIT, LostRankError, is_lost_rank
from genflow.train.launch import _describe, _first_failure
from genflow.train.logger import drop_rows_after, read_metrics


def test_the_ranks_get_the_command_without_nproc():
    argv = ["train", "--nproc", "2", "--config", "debug", "--nproc=3", "train.steps=4"]
    assert _argv_without_nproc(argv) == ["train", "--config", "debug", "train.steps=4"]


def test_the_first_failure_is_the_rank_that_died_not_one_that_lost_it():
    """Rank 0 noticing the loss can be seen in the same poll as (or before) rank 1's death."""
    codes = {0: (1.0, LOST_RANK_EXIT), 1: (1.05, -signal.SIGKILL), 2: (3.0, LOST_RANK_EXIT)}
    assert _first_failure(codes) == 1
    assert _first_failure({0: (1.0, 0), 1: (2.0, 0)}) is None
    assert _first_failure({0: (2.0, 1), 1: (1.0, 2)}) == 1
    # in one poll interval, the rank a signal killed before one that failed by itself
    assert _first_failure({0: (1.0, 2), 1: (1.0, -signal.SIGKILL)}) == 1


def test_a_rank_lost_inside_a_checkpoint_save_is_a_lost_rank():
    """DCP wraps what each rank raised; a lost peer inside it is no disk failure."""
    lost = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234")
    assert is_lost_rank(CheckpointException("save failed", {0: (lost, None)}))
    assert is_lost_rank(LostRankError("saving the checkpoint of step 4"))
    wrapped = ValueError("collective failed")
    wrapped.__cause__ = lost
    assert is_lost_rank(wrapped)
    assert not is_lost_rank(CheckpointException("save failed", {0: (OSError(28, "No space left on device"), None)}))


def test_a_death_is_described_by_its_signal():
    assert _describe(1, -signal.SIGKILL) == "rank 1 was killed by SIGKILL (out of memory, or kill -9)"
    assert _describe(0, 1) == "rank 0 failed with exit code 1 (its error is above)"


def test_a_resume_drops_the_rows_after_its_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in range(1, 7)]
    path.write_text("\n".join(rows) + "\n" + '{"step": 7, "lo')  # a crash cut the last row
    drop_rows_after(path, 4)
    assert [row["step"] for row in read_metrics(tmp_path)] == [1, 2, 3, 4]
    assert path.read_text() == "\n".join(rows[:4]) + "\n"
