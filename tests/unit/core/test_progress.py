"""Progress of long commands: ``generate`` reports its work chunk by chunk, so bars over
samples x steps (``genflow sample``, ``genflow eval``) end exactly at their total."""

from __future__ import annotations

import torch

from genflow.sampling.driver import generate
from genflow.sampling.runs import load_run


def test_generate_reports_every_chunk_once(finished_run, manager):
    run = load_run(finished_run, manager, step=None, device=torch.device("cpu"))
    reported: list[int] = []
    steps, num = (1, 3), 10
    out = generate(run.backbone, run.components.sampler, run.components.spec, steps=steps, num=num, seed=0,
                   device=torch.device("cpu"), batch_size=4, on_chunk=reported.append)
    assert reported == [1 * 4, 1 * 4, 1 * 2, 3 * 4, 3 * 4, 3 * 2]  # chunks of 4, 4, 2 rows per step count
    assert sum(reported) == num * sum(steps)
    assert {k: v.shape[0] for k, v in out.items()} == {1: num, 3: num}
