"""Writing latent stores: resumable chunk by chunk, marked complete last.

The writer creates every array at its full size, writes whole chunks, and records each finished
chunk in its bucket's ``done_chunks`` attribute, so an interrupted run resumes where it stopped
when its plan (a fingerprint of source, autoencoder and layout) is unchanged. An unfinished store
of another plan is replaced; a complete one only with ``overwrite``; anything that is not a genflow
store never. Replacing a store removes its own arrays and groups, not other files in its folder. Zip archives are staged in a local directory and packed when complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from genflow.data.store import ATTRS_KEY, FORMAT, VERSION, Location, StoreMeta, filesystem, open_group, zarr_store
from genflow.errors import GenflowError


@attrs.frozen(kw_only=True)
class BucketLayout:
    """What one bucket will hold: ``count`` samples of ``sample_shape`` in ``dtype``, chunked by
    ``chunk`` rows; which optional arrays it has; its pixel size (``None`` for points)."""

    key: str
    count: int
    sample_shape: tuple[int, ...]
    dtype: str
    chunk: int
    pixel_size: tuple[int, int] | None = None
    labels: bool = False
    captions: bool = False
    flip: bool = False
    source_index: bool = True

    @property
    def num_chunks(self) -> int:
        return -(-self.count // self.chunk)

    def rows(self, chunk: int) -> tuple[int, int]:
        return chunk * self.chunk, min((chunk + 1) * self.chunk, self.count)


class StoreWriter:
    """Writes one store at ``url``. Use :meth:`pending`, :meth:`write_chunk`, then :meth:`finish`."""

    def __init__(
        self,
        url: str,
        meta: StoreMeta,
        layouts: Sequence[BucketLayout],
        *,
        overwrite: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.location = Location.parse(url)
        self.storage_options = dict(storage_options or {})
        self.layouts = {layout.key: layout for layout in layouts}
        self.meta = meta
        self.target = _staging_dir(self.location) if self.location.kind == "zip" else url
        self._check_target(overwrite)
        self.group, self.done = self._open_or_create()
        #: True when an unfinished run's chunks were kept.
        self.resumed = any(self.done.values())

    def pending(self, key: str) -> list[int]:
        """Chunks of bucket ``key`` still to write."""
        return [c for c in range(self.layouts[key].num_chunks) if c not in self.done[key]]

    def write_chunk(self, key: str, chunk: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write every array's rows of ``chunk`` (``latents`` and the optional arrays of the
        layout), then mark the chunk done."""
        layout = self.layouts[key]
        start, stop = layout.rows(chunk)
        bucket = cast(zarr.Group, cast(zarr.Group, self.group["buckets"])[key])
        for name in _array_names(layout):
            values = arrays[name]
            if len(values) != stop - start:
                raise ValueError(f"{name} of chunk {chunk} has {len(values)} rows, expected {stop - start}")
            cast(zarr.Array, bucket[name])[start:stop] = values
        self.done[key].add(chunk)
        bucket.attrs["done_chunks"] = sorted(self.done[key])

    def finish(self, stats: Mapping[str, Any]) -> None:
        """Store the statistics and mark the store complete (the last write); pack zip archives."""
        if any(self.pending(key) for key in self.layouts):
            raise RuntimeError("finish() called with chunks still pending")
        meta = attrs.evolve(self.meta, stats=dict(stats), complete=True)
        self.group.attrs[ATTRS_KEY] = meta.to_json()
        if self.location.kind == "zip":
            _pack_zip(self.target, self.location.path, self.storage_options)
            shutil.rmtree(self.target, ignore_errors=True)

    def _check_target(self, overwrite: bool) -> None:
        """Refuse to replace a complete store (without ``overwrite``) or anything else."""
        filesystem(self.location.path, self.storage_options)  # a missing fsspec backend fails here
        if self.location.kind == "zip" and _exists(self.location.path, self.storage_options):
            _refuse_unless_replaceable(self.url, _inspect(self.url, self.storage_options), overwrite)
        staged = _inspect(self.target, self.storage_options)
        if self.location.kind == "zip" and staged.kind == "genflow" and staged.plan == self.meta.plan:
            return  # a finished staging directory whose packing failed: pack it again
        _refuse_unless_replaceable(self.url, staged, overwrite)

    def _open_or_create(self) -> tuple[zarr.Group, dict[str, set[int]]]:
        store = zarr_store(self.target, read_only=False, storage_options=self.storage_options)
        existing = _inspect(self.target, self.storage_options)
        resumable = not existing.complete or self.location.kind == "zip"  # zip: only packing failed
        if existing.kind == "genflow" and existing.plan == self.meta.plan and resumable:
            group = zarr.open_group(store, mode="r+")
            buckets = cast(zarr.Group, group["buckets"])
            done = {k: set(cast(list[int], buckets[k].attrs.get("done_chunks", []))) for k in self.layouts}
            return group, done
        if existing.kind == "genflow":  # an unfinished or replaced store: remove its own arrays only
            group = zarr.open_group(store, mode="r+")
            for name in list(group.keys()):
                del group[name]
        else:  # nothing there, or an empty folder
            group = zarr.open_group(store, mode="w")
        group.attrs[ATTRS_KEY] = attrs.evolve(self.meta, complete=False).to_json()
        for layout in self.layouts.values():
            _create_bucket(group, layout)
        return group, {k: set() for k in self.layouts}


def check_target(url: str, *, overwrite: bool = False, storage_options: Mapping[str, Any] | None = None) -> None:
    """Refuse ``url`` as a target, writing nothing, where :class:`StoreWriter` would: something that
    is not a genflow store, or a complete store without ``overwrite``."""
    location = Location.parse(url)
    options = dict(storage_options or {})
    filesystem(location.path, options)  # a missing fsspec backend fails here
    if location.kind != "zip" or _exists(location.path, options):
        _refuse_unless_replaceable(url, _inspect(url, options), overwrite)


@attrs.frozen(kw_only=True)
class _Existing:
    """What is at a target: ``none`` (nothing or an empty directory), ``foreign`` (not a genflow
    store) or ``genflow``; ``complete`` counts stores of other format versions as complete."""

    kind: str
    complete: bool = False
    plan: str = ""


def _inspect(url: str, storage_options: Mapping[str, Any]) -> _Existing:
    try:
        group = open_group(url, storage_options=storage_options)
    except GenflowError:
        return _Existing(kind="none" if _is_empty(url, storage_options) else "foreign")
    data = group.attrs.get(ATTRS_KEY)
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        return _Existing(kind="foreign")
    if data.get("version") != VERSION:
        return _Existing(kind="genflow", complete=True)
    return _Existing(kind="genflow", complete=bool(data.get("complete")), plan=str(data.get("plan", "")))


def _refuse_unless_replaceable(url: str, existing: _Existing, overwrite: bool) -> None:
    if existing.kind == "foreign":
        raise GenflowError(f"'{url}' exists and is not a genflow store; choose another --out (nothing was written)")
    if existing.complete and not overwrite:
        raise GenflowError(f"'{url}' already holds a complete genflow store; pass --overwrite to replace it")


def _array_names(layout: BucketLayout) -> list[str]:
    flags = {"labels": layout.labels, "captions": layout.captions, "latents_flip": layout.flip}
    flags["source_index"] = layout.source_index
    return ["latents"] + [name for name, on in flags.items() if on]


def _create_bucket(group: zarr.Group, layout: BucketLayout) -> None:
    bucket = group.require_group(f"buckets/{layout.key}")
    attributes: dict[str, Any] = {"count": layout.count, "done_chunks": []}
    if layout.pixel_size is not None:
        attributes.update(height=layout.pixel_size[0], width=layout.pixel_size[1])
    bucket.attrs.update(attributes)
    # A checksum in every chunk turns silent corruption into a decode error; empty chunks are
    # written too, so a missing chunk file always means damage.
    compressors = ZstdCodec(level=3, checksum=True)
    n, chunk, shape = layout.count, layout.chunk, layout.sample_shape
    for name in _array_names(layout):
        if name in ("latents", "latents_flip"):
            bucket.create_array(
                name,
                shape=(n, *shape),
                chunks=(chunk, *shape),
                dtype=layout.dtype,
                compressors=compressors,
                config={"write_empty_chunks": True},
            )
        elif name == "captions":
            bucket.create_array(
                name,
                shape=(n,),
                chunks=(chunk,),
                dtype=str,
                compressors=compressors,
                config={"write_empty_chunks": True},
            )
        else:
            bucket.create_array(
                name,
                shape=(n,),
                chunks=(chunk,),
                dtype="int64",
                fill_value=-1,
                compressors=compressors,
                config={"write_empty_chunks": True},
            )


def _exists(url: str, storage_options: Mapping[str, Any]) -> bool:
    fs, path = filesystem(url, storage_options)
    return bool(fs.exists(path))


def _is_empty(url: str, storage_options: Mapping[str, Any]) -> bool:
    fs, path = filesystem(url, storage_options)
    return not fs.exists(path) or (fs.isdir(path) and not fs.ls(path))


def _staging_dir(location: Location) -> str:
    """A local directory where a zip archive's store is written before it is packed."""
    inner = location.path
    if inner.startswith("file://"):
        inner = inner[len("file://") :]
    if "://" not in inner and "::" not in inner:
        return inner + ".partial"
    digest = hashlib.sha1(inner.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"genflow-stage-{digest}")


def _pack_zip(directory: str, url: str, storage_options: Mapping[str, Any]) -> None:
    """Pack ``directory`` into the zip archive ``url`` (stored, not recompressed: chunks are
    compressed already), through a temporary name so a failure leaves no partial archive."""
    fs, path = filesystem(url, storage_options)
    partial = path + ".packing"
    with fs.open(partial, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
        for root, _, files in sorted(os.walk(directory)):
            for name in sorted(files):
                full = os.path.join(root, name)
                archive.write(full, os.path.relpath(full, directory).replace(os.sep, "/"))
    fs.mv(partial, path)
