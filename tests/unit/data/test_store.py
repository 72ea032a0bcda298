"""Round trips: what ``prepare`` wrote reads back bit-identical, on every kind of location."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genflow.data.reader import ReadOptions, StoreLoader
from genflow.data.store import LatentStore

from .helpers import take, write_shapes


@pytest.fixture(params=["local", "memory", "zip"])
def any_url(request, tmp_path, memory_url) -> str:
    return {"local": str(tmp_path / "s.zarr"), "memory": memory_url, "zip": f"zip::{tmp_path / 's.zip'}"}[request.param]


def test_round_trip_is_bit_identical(any_url):
    source = write_shapes(any_url, mode="single")
    store = LatentStore(any_url)
    assert store.meta.complete and store.meta.num_classes == 16 and store.count == 150
    (bucket,) = store.buckets.values()
    expected = source.load(bucket.key, 0, 150)
    got = [bucket.read(c) for c in range(bucket.num_chunks)]
    latents = np.concatenate([c.latents for c in got])
    assert latents.dtype == np.uint8
    np.testing.assert_array_equal(latents, expected.data.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(np.concatenate([c.labels for c in got]), expected.labels)
    assert [str(s) for c in got for s in c.captions] == expected.captions
    np.testing.assert_array_equal(np.concatenate([c.source_index for c in got]), np.arange(150))
    stats = store.meta.stats
    assert len(stats["mean"]) == 3 and all(s > 0 for s in stats["std"])


def test_zip_store_leaves_no_staging_directory(tmp_path):
    write_shapes(str(tmp_path / "a.zip"), count=40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]
    assert LatentStore(str(tmp_path / "a.zip")).count == 40


@pytest.mark.parametrize(("count", "drop_last"), [(150, True), (147, False)])
def test_two_ranks_cover_every_sample_once_per_epoch(tmp_path, count, drop_last):
    url = str(tmp_path / "s.zarr")
    write_shapes(url, count=count)
    store = LatentStore(url)
    options = ReadOptions(drop_last=drop_last)
    loaders = [StoreLoader(store, batch_size=5, rank=r, world_size=2, seed=3, options=options) for r in (0, 1)]
    assert loaders[0].batches_per_epoch == 15
    for epoch in range(2):
        per_rank = [np.concatenate([b.source_index for b in take(loader, 15)]) for loader in loaders]
        np.testing.assert_array_equal(np.sort(np.concatenate(per_rank)), np.arange(count))
        assert not set(per_rank[0]) & set(per_rank[1])
        assert loaders[0].state_dict()["epoch"] == epoch + 1


def test_one_rank_sees_what_two_ranks_see_together(shapes_store):
    url, _ = shapes_store
    store = LatentStore(url)
    single = take(StoreLoader(store, batch_size=10, seed=5), 20)
    ranks = [take(StoreLoader(store, batch_size=5, rank=r, world_size=2, seed=5), 20) for r in (0, 1)]
    for whole, a, b in zip(single, *ranks, strict=True):
        torch.testing.assert_close(whole.x, torch.cat([a.x, b.x]), rtol=0, atol=0)
        assert whole.captions == a.captions + b.captions


def test_epochs_are_shuffled_differently_and_chunk_aware(shapes_store):
    url, _ = shapes_store
    store = LatentStore(url)
    loader = StoreLoader(store, batch_size=10, seed=0, options=ReadOptions(window=1))
    epoch0 = [b.rows for b in take(loader, 15)]
    epoch1 = [b.rows for b in take(loader, 15)]
    assert not all(np.array_equal(a, b) for a, b in zip(epoch0, epoch1, strict=True))
    # window=1: rows run through one chunk at a time, so a batch touches at most two chunks.
    assert all(len(np.unique(rows // 32)) <= 2 for rows in epoch0)


def test_buckets_one_per_batch_proportional_to_size(tmp_path):
    url = str(tmp_path / "b.zarr")
    write_shapes(url, count=240, aspect_ratios=(1.0, 2.0), chunk=16)
    store = LatentStore(url)
    assert set(store.buckets) == {"16x16", "8x24"}  # 2:1 at area 16*16, multiple 8: 8 x 24 (close to 11 x 23)
    loader = StoreLoader(store, batch_size=8, seed=1)
    batches = take(loader, loader.batches_per_epoch)
    for batch in batches:
        assert batch.x.shape[1:] == store.buckets[batch.bucket].sample_shape
    counts = {key: sum(b.bucket == key for b in batches) for key in store.buckets}
    assert counts == {key: bucket.count // 8 for key, bucket in store.buckets.items()}


def test_flip_reads_the_mirrored_latents(tmp_path):
    url = str(tmp_path / "f.zarr")
    write_shapes(url, count=64, flip=True)
    store = LatentStore(url)
    assert store.has_flip
    plain = take(StoreLoader(store, batch_size=64, seed=2), 1)[0]
    flipped = take(StoreLoader(store, batch_size=64, seed=2, options=ReadOptions(flip=True)), 1)[0]
    np.testing.assert_array_equal(plain.rows, flipped.rows)
    mirrored = (plain.x != flipped.x).flatten(1).any(1)
    assert 10 < int(mirrored.sum()) < 54
    torch.testing.assert_close(flipped.x[mirrored], plain.x[mirrored].flip(-1), rtol=0, atol=0)
