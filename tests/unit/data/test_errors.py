"""Bad input is one clear line (``GenflowError``), and a failed prepare is never taken for good."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from genflow.data.autoencoders import Identity
from genflow.data.pipeline import prepare_store
from genflow.data.reader import ReadOptions, StoreLoader
from genflow.data.sources import ShapesSource
from genflow.data.store import ATTRS_KEY, LatentStore
from genflow.errors import GenflowError

from .helpers import small_shapes, take, write_shapes


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(GenflowError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 2
    return message


def test_missing_store(tmp_path, memory_url):
    assert "no genflow store" in _error(LatentStore, str(tmp_path / "nothing.zarr"))
    assert "no genflow store" in _error(LatentStore, memory_url)
    assert "no genflow store" in _error(LatentStore, str(tmp_path / "nothing.zip"))


def test_not_a_genflow_store(tmp_path):
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["x"] = 1
    assert "not a genflow store" in _error(LatentStore, str(tmp_path / "other.zarr"))


def test_another_format_version(shapes_store):
    url, _ = shapes_store
    group = zarr.open_group(url, mode="r+")
    group.attrs[ATTRS_KEY] = {**group.attrs[ATTRS_KEY], "version": 2}
    message = _error(LatentStore, url)
    assert "version 2" in message and "version 1" in message


def test_mismatched_latents_and_labels(shapes_store):
    url, _ = shapes_store
    zarr.open_group(url, mode="r+")["buckets/16x16/labels"].resize((149,))
    message = _error(LatentStore, url)
    assert "labels has 149 rows but latents has 150" in message


def test_corrupted_chunk(shapes_store):
    url, _ = shapes_store
    path = os.path.join(url, "buckets", "16x16", "latents", "c", "2", "0", "0", "0")
    with open(path, "r+b") as chunk:
        data = bytearray(chunk.read())
        data[len(data) // 2] ^= 0xFF
        chunk.seek(0)
        chunk.write(bytes(data))
    store = LatentStore(url)  # opening is cheap: damage shows when the chunk is read
    message = _error(lambda: take(StoreLoader(store, batch_size=30, options=ReadOptions(shuffle=False)), 5))
    assert "chunk 2 of buckets/16x16/latents" in message and "corrupted" in message
    workers = StoreLoader(store, batch_size=30, options=ReadOptions(shuffle=False, num_workers=1))
    assert "corrupted" in _error(lambda: take(workers, 5))


def test_missing_chunk(shapes_store):
    url, _ = shapes_store
    os.remove(os.path.join(url, "buckets", "16x16", "labels", "c", "1"))
    assert "missing 1 of 5 chunks" in _error(LatentStore, url)


class _Failing(ShapesSource):
    """Fails when loading chunk ``fail_at``; counts the chunks it loads."""

    def __init__(self, config, fail_at: int | None) -> None:
        super().__init__(config)
        self.fail_at, self.loaded = fail_at, []

    def load(self, key, start, stop):
        if start // 32 == self.fail_at:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of a run
        self.loaded.append(start // 32)
        return super().load(key, start, stop)


def test_interrupted_prepare_is_refused_then_resumed_bit_identically(tmp_path):
    url = str(tmp_path / "r.zarr")
    with pytest.raises(KeyboardInterrupt):
        prepare_store(_Failing(small_shapes(), fail_at=3), Identity(), url, chunk=32, progress=False)
    assert "incomplete" in _error(LatentStore, url)
    resumed = _Failing(small_shapes(), fail_at=None)
    result = prepare_store(resumed, Identity(), url, chunk=32, progress=False)
    assert result.resumed and resumed.loaded == [3, 4]  # chunks 0-2 were kept
    fresh = str(tmp_path / "fresh.zarr")
    write_shapes(fresh)
    a, b = LatentStore(url), LatentStore(fresh)
    for name in ("latents", "labels", "captions"):
        np.testing.assert_array_equal(a.buckets["16x16"].arrays[name][:], b.buckets["16x16"].arrays[name][:])
    assert a.meta.stats == b.meta.stats


def test_non_finite_latents_are_refused(tmp_path):
    class Broken(Identity):
        latent_dtype = "float32"

        def encode(self, images):
            out = images.float()
            out[3, 0, 0, 0] = float("nan")
            return out

    url = str(tmp_path / "nan.zarr")
    assert "non-finite latents" in _error(prepare_store, ShapesSource(small_shapes()), Broken(), url, progress=False)
    assert "incomplete" in _error(LatentStore, url)


def test_prepare_never_replaces_what_is_not_a_store(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.txt").write_text("keep me")
    source = ShapesSource(small_shapes(count=20))
    assert "not a genflow store" in _error(
        prepare_store, source, Identity(), str(target), overwrite=True, progress=False
    )
    assert (target / "thesis.txt").read_text() == "keep me"


def test_complete_store_needs_overwrite(shapes_store):
    url, _ = shapes_store
    source = ShapesSource(small_shapes(count=20))
    assert "--overwrite" in _error(prepare_store, source, Identity(), url, progress=False)
    prepare_store(source, Identity(), url, overwrite=True, progress=False)
    assert LatentStore(url).count == 20


@pytest.mark.filterwarnings("ignore:Object at README.txt")
def test_replacing_an_unfinished_store_removes_only_its_own_arrays(tmp_path):
    """An unfinished store of another plan is replaced; a file the user put in its folder stays."""
    url = str(tmp_path / "half.zarr")

    class Broken(Identity):
        def encode(self, images):
            raise RuntimeError("the encoder failed mid-way")

    with pytest.raises(RuntimeError):
        prepare_store(ShapesSource(small_shapes(count=20)), Broken(), url, progress=False)
    assert "incomplete" in _error(LatentStore, url)
    (tmp_path / "half.zarr" / "README.txt").write_text("mine")
    prepare_store(ShapesSource(small_shapes(count=12, seed=5)), Identity(), url, progress=False)
    assert LatentStore(url).count == 12
    assert (tmp_path / "half.zarr" / "README.txt").read_text() == "mine"
