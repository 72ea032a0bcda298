"""Property-based tests (hypothesis) of the store reader: an epoch's sample order is a permutation,
rank shards partition every global batch, the order does not depend on the world size, and a loader
restored from its (JSON) state continues exactly where the original was."""

from __future__ import annotations

import itertools
import json
import math

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genflow.data.reader import PlannedBatch, ReadOptions, StoreLoader, epoch_plan
from genflow.data.store import LatentStore

from .helpers import write_shapes

FAST = settings(max_examples=60, deadline=None)
STORE = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@attrs.frozen
class FakeBucket:
    """What ``epoch_plan`` reads of a bucket."""

    key: str
    count: int
    chunk: int

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.count / self.chunk)


buckets_st = st.lists(st.tuples(st.integers(1, 70), st.integers(1, 16)), min_size=1, max_size=3).map(
    lambda specs: [FakeBucket(key=f"b{i}", count=n, chunk=c) for i, (n, c) in enumerate(specs)])
options_st = st.builds(ReadOptions, shuffle=st.booleans(), drop_last=st.booleans(), window=st.integers(0, 5))


@FAST
@given(buckets=buckets_st, global_batch=st.integers(1, 24), seed=st.integers(0, 2**32 - 1),
       epoch=st.integers(0, 5), options=options_st)
def test_an_epoch_is_a_permutation_of_every_bucket(buckets, global_batch, seed, epoch, options):
    plan = epoch_plan(buckets, global_batch=global_batch, seed=seed, epoch=epoch, options=options)
    for bucket in buckets:
        batches = [b for b in plan if b.bucket == bucket.key]
        rows = np.concatenate([b.rows for b in batches]) if batches else np.empty(0, dtype=np.int64)
        assert len(np.unique(rows)) == len(rows) and set(rows.tolist()) <= set(range(bucket.count))
        if options.drop_last:  # only full batches; what is left over is less than one batch
            assert all(len(b.rows) == global_batch for b in batches)
            assert bucket.count - len(rows) < global_batch
        else:  # every sample once; only the last batch may be partial
            assert sorted(rows.tolist()) == list(range(bucket.count))
            assert all(len(b.rows) == global_batch for b in batches[:-1])
    again = epoch_plan(buckets, global_batch=global_batch, seed=seed, epoch=epoch, options=options)
    assert [(b.bucket, b.rows.tolist()) for b in again] == [(b.bucket, b.rows.tolist()) for b in plan]


@FAST
@given(rows=st.lists(st.integers(0, 10**6), unique=True, max_size=40), world_size=st.integers(1, 8),
       flip=st.booleans())
def test_rank_shards_partition_a_global_batch(rows, world_size, flip):
    batch = PlannedBatch(bucket="b", rows=np.array(rows, dtype=np.int64),
                         flips=np.arange(len(rows)) % 2 == 0 if flip else None)
    shards = [batch.shard(rank, world_size) for rank in range(world_size)]
    assert np.concatenate([s.rows for s in shards]).tolist() == rows  # in order, disjoint, complete
    sizes = [len(s.rows) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    if flip:
        assert np.concatenate([s.flips for s in shards]).tolist() == batch.flips.tolist()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LatentStore:
    """Two resolution buckets (square and wide) of 90 shapes in chunks of 8, with source indices."""
    url = str(tmp_path_factory.mktemp("props") / "shapes.zarr")
    write_shapes(url, count=90, aspect_ratios=(1.0, 2.0), chunk=8)
    return LatentStore(url)


def batches(loader: StoreLoader, n: int) -> list:
    return list(itertools.islice(loader.iter_raw(), n))


def identity(raw) -> list[tuple[str, int]]:  # noqa: ANN001
    return [(raw.bucket, int(i)) for i in raw.source_index]


@STORE
@given(world_size=st.integers(1, 3), batch_size=st.integers(1, 6), seed=st.integers(0, 1000),
       drop_last=st.booleans(), n=st.integers(1, 40))
def test_the_global_order_does_not_depend_on_the_world_size(store, world_size, batch_size, seed, drop_last, n):
    options = ReadOptions(drop_last=drop_last)
    single = batches(StoreLoader(store, batch_size=batch_size * world_size, seed=seed, options=options), n)
    ranks = [batches(StoreLoader(store, batch_size=batch_size, rank=r, world_size=world_size, seed=seed,
                                 options=options), n) for r in range(world_size)]
    for i, whole in enumerate(single):
        assert identity(whole) == [x for r in range(world_size) for x in identity(ranks[r][i])]
        assert np.array_equal(np.concatenate([ranks[r][i].x.numpy() for r in range(world_size)]), whole.x.numpy())


@STORE
@given(world_size=st.integers(1, 3), batch_size=st.integers(1, 6), seed=st.integers(0, 1000))
def test_one_epoch_reads_every_sample_once(store, world_size, batch_size, seed):
    options = ReadOptions(drop_last=False)
    loaders = [StoreLoader(store, batch_size=batch_size, rank=r, world_size=world_size, seed=seed, options=options)
               for r in range(world_size)]
    seen = [x for loader in loaders for raw in batches(loader, loader.batches_per_epoch) for x in identity(raw)]
    expected = [(key, int(i)) for key, bucket in store.buckets.items() for i in bucket.arrays["source_index"][:]]
    assert sorted(seen) == sorted(expected) and len(seen) == store.count


@STORE
@given(world_size=st.integers(1, 3), batch_size=st.integers(1, 6), seed=st.integers(0, 1000),
       k=st.integers(0, 40), more=st.integers(1, 10))
def test_a_restored_loader_continues_exactly(store, world_size, batch_size, seed, k, more):
    rank = world_size - 1
    make = lambda: StoreLoader(store, batch_size=batch_size, rank=rank, world_size=world_size, seed=seed)  # noqa: E731
    uninterrupted = batches(make(), k + more)
    first = make()
    batches(first, k)
    state = json.loads(json.dumps(first.state_dict()))  # as it travels in a checkpoint's trainer.json
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == first.state_dict()
    for a, b in zip(batches(resumed, more), uninterrupted[k:], strict=True):
        assert identity(a) == identity(b) and np.array_equal(a.x.numpy(), b.x.numpy())
