"""Damaged copies of a good latent store, one per way a store can disagree with its metadata."""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable

import numpy as np
import zarr


def _attrs(root: pathlib.Path) -> tuple[dict, pathlib.Path]:
    path = root / "zarr.json"
    return json.loads(path.read_text()), path


def _edit_meta(root: pathlib.Path, **changes: object) -> None:
    data, path = _attrs(root)
    data["attributes"]["genflow"].update(changes)
    path.write_text(json.dumps(data))


def _bucket(root: pathlib.Path) -> zarr.Group:
    group = zarr.open_group(str(root), mode="r+")
    buckets = group["buckets"]
    return buckets[sorted(buckets.group_keys())[0]]


def _rewrite(bucket: zarr.Group, name: str, values: np.ndarray) -> None:
    old = bucket[name]
    chunks = (old.chunks[0], *values.shape[1:])
    del bucket[name]
    bucket.create_array(name, data=values, chunks=chunks)


def labels_out_of_range(root: pathlib.Path) -> None:
    bucket = _bucket(root)
    labels = np.asarray(bucket["labels"][:])
    labels[-1] = 999
    bucket["labels"][:] = labels


def empty_bucket(root: pathlib.Path) -> None:
    bucket = _bucket(root)
    for name in list(bucket.array_keys()):
        old = bucket[name]
        del bucket[name]
        bucket.create_array(name, shape=(0, *old.shape[1:]), chunks=old.chunks, dtype=old.dtype)


def unknown_codec(root: pathlib.Path) -> None:
    key = sorted(p.name for p in (root / "buckets").iterdir() if p.is_dir())[0]
    path = root / "buckets" / key / "latents" / "zarr.json"
    meta = json.loads(path.read_text())
    meta["codecs"] = [{"name": "nosuchcodec", "configuration": {}}]
    path.write_text(json.dumps(meta))


def latents_of_another_dtype(root: pathlib.Path) -> None:
    bucket = _bucket(root)
    _rewrite(bucket, "latents", np.asarray(bucket["latents"][:]).astype(np.float64))


def labels_as_floats(root: pathlib.Path) -> None:
    bucket = _bucket(root)
    _rewrite(bucket, "labels", np.asarray(bucket["labels"][:]).astype(np.float32) + 0.5)


def complete_not_a_boolean(root: pathlib.Path) -> None:
    _edit_meta(root, complete="yes")


def channels_disagree(root: pathlib.Path) -> None:
    data, _ = _attrs(root)
    _edit_meta(root, channels=data["attributes"]["genflow"]["channels"] + 1)


def shift_of_wrong_length(root: pathlib.Path) -> None:
    data, _ = _attrs(root)
    autoencoder = dict(data["attributes"]["genflow"]["autoencoder"])
    autoencoder["shift"] = autoencoder["shift"][:1]
    _edit_meta(root, autoencoder=autoencoder)


def negative_num_classes(root: pathlib.Path) -> None:
    _edit_meta(root, num_classes=-3)


#: name -> (what it does to a copy of the store, a phrase the one-line error must hold)
DAMAGES: dict[str, tuple[Callable[[pathlib.Path], None], str]] = {
    "labels out of range": (labels_out_of_range, "labels holds 999"),
    "empty bucket": (empty_bucket, "has no samples"),
    "unknown codec": (unknown_codec, "nosuchcodec"),
    "latents of another dtype": (latents_of_another_dtype, "latents has dtype float64"),
    "labels as floats": (labels_as_floats, "labels has dtype float32"),
    "complete not a boolean": (complete_not_a_boolean, "complete"),
    "channels disagree": (channels_disagree, "channels"),
    "shift of wrong length": (shift_of_wrong_length, "shift"),
    "negative num_classes": (negative_num_classes, "num_classes"),
}


def damaged_copy(store: pathlib.Path, folder: pathlib.Path, name: str) -> pathlib.Path:
    """A copy of ``store`` in ``folder`` with damage ``name`` applied."""
    target = folder / f"{name.replace(' ', '_')}.zarr"
    shutil.copytree(store, target)
    DAMAGES[name][0](target)
    return target


def corrupt_zip(folder: pathlib.Path) -> pathlib.Path:
    """A ``.zip`` file that is not a zip archive."""
    path = folder / "corrupt.zip"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    return path
