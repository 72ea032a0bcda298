"""The loader's position: exact resume (also across epochs and with workers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genflow.data.reader import ReadOptions, StoreLoader
from genflow.data.store import LatentStore
from genflow.errors import GenflowError

from .helpers import take


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.bucket == y.bucket
        np.testing.assert_array_equal(x.rows, y.rows)
        torch.testing.assert_close(x.x, y.x, rtol=0, atol=0)
        torch.testing.assert_close(x.labels, y.labels, rtol=0, atol=0)
        assert x.captions == y.captions


@pytest.mark.parametrize("k", [1, 7, 15, 22])
def test_resume_yields_what_an_uninterrupted_read_yields(shapes_store, k):
    url, _ = shapes_store
    store = LatentStore(url)
    make = lambda: StoreLoader(store, batch_size=4, rank=1, world_size=2, seed=11)  # noqa: E731
    uninterrupted = take(make(), 30)  # 15 batches per epoch: crosses into the second epoch
    first = make()
    _same(take(first, k), uninterrupted[:k])
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    _same(take(resumed, 30 - k), uninterrupted[k:])


def test_batches_carry_labels_in_the_interface_batch(shapes_store):
    url, source = shapes_store
    batch = next(iter(StoreLoader(LatentStore(url), batch_size=8, seed=0)))
    assert batch.x.shape == (8, 3, 16, 16) and batch.x.dtype == torch.float32
    assert float(batch.x.min()) >= -1.0 and float(batch.x.max()) <= 1.0
    assert batch.cond.labels.dtype == torch.int64 and batch.cond.labels.shape == (8,)


def test_resume_refuses_another_global_batch(shapes_store):
    url, _ = shapes_store
    store = LatentStore(url)
    state = StoreLoader(store, batch_size=4, seed=0).state_dict()
    with pytest.raises(GenflowError, match="global batch 4"):
        StoreLoader(store, batch_size=8, seed=0).load_state_dict(state)


def test_dataloader_workers_keep_the_order_and_the_position(shapes_store):
    url, _ = shapes_store
    store = LatentStore(url)
    expected = take(StoreLoader(store, batch_size=10, seed=4), 20)
    workers = StoreLoader(store, batch_size=10, seed=4, options=ReadOptions(num_workers=2))
    _same(take(workers, 12), expected[:12])
    state = workers.state_dict()
    assert state["epoch"] == 0 and state["position"] == 12
    resumed = StoreLoader(store, batch_size=10, seed=4, options=ReadOptions(num_workers=2))
    resumed.load_state_dict(state)
    _same(take(resumed, 8), expected[12:])


def test_too_large_a_batch_is_refused(shapes_store):
    url, _ = shapes_store
    with pytest.raises(GenflowError, match="no bucket holds a full global batch"):
        StoreLoader(LatentStore(url), batch_size=100, world_size=2, rank=0)
