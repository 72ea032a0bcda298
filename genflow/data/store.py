"""The zarr latent store (docs/data.md): format, locations and validated reading.

A store is a zarr v3 group reached through fsspec: a local path, ``file://``, ``memory://``,
``s3://`` (with s3fs) or any fsspec URL, and zip archives (``zip::<url>`` or a path ending in
``.zip``, read-only; :mod:`genflow.data.writer` stages them). Layout::

    <root>/zarr.json                  attributes["genflow"] = StoreMeta (format, version, complete,
                                      autoencoder name / config / shift / scale, stats, source)
    <root>/buckets/<H>x<W>/latents    (N, C, h, w) raw autoencoder latents, chunked along N
    <root>/buckets/<H>x<W>/labels     (N,) int64 class ids (optional)
    <root>/buckets/<H>x<W>/captions   (N,) strings (optional)
    <root>/buckets/<H>x<W>/latents_flip (N, C, h, w) latents of the mirrored image (optional)
    <root>/buckets/<H>x<W>/source_index (N,) int64 index of the sample in its source (optional)

Model space is ``(latents - shift) * scale`` per channel. ``complete`` is written last, so a store
whose writer failed is never taken for a good one.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import zipfile
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import attrs
import fsspec
import numpy as np
import zarr
import zarr.errors
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from genflow.data.buckets import POINTS_BUCKET, parse_bucket_key
from genflow.errors import GenflowError

FORMAT = "genflow-latents"
VERSION = 1
ATTRS_KEY = "genflow"
ARRAYS = ("latents", "labels", "captions", "latents_flip", "source_index")


@attrs.frozen(kw_only=True)
class Location:
    """Where a store lives: ``kind`` is ``local`` (``path`` is a directory), ``zip`` (``path`` is
    the archive's URL or path) or ``fsspec`` (``path`` is the URL)."""

    kind: str
    path: str

    @staticmethod
    def parse(url: str) -> Location:
        if url.startswith("zip::"):
            return Location(kind="zip", path=url[len("zip::") :])
        if "::" not in url and url.rstrip("/").endswith(".zip"):
            return Location(kind="zip", path=url)
        if url.startswith("file://"):
            return Location(kind="local", path=url[len("file://") :])
        if "://" in url or "::" in url:
            return Location(kind="fsspec", path=url)
        return Location(kind="local", path=os.path.expanduser(url))


def zarr_store(url: str, *, read_only: bool, storage_options: Mapping[str, Any] | None = None) -> Store:
    """The zarr store behind ``url``; zip archives are read-only."""
    location = Location.parse(url)
    try:
        if location.kind == "local":
            return LocalStore(location.path, read_only=read_only)
        if location.kind == "zip":
            url = "zip::" + location.path
            return _ArchiveStore.from_url(url, storage_options=dict(storage_options or {}), read_only=True)
        return FsspecStore.from_url(location.path, storage_options=dict(storage_options or {}), read_only=read_only)
    except ImportError as exc:
        raise GenflowError(f"cannot open store '{url}': {exc} (install the fsspec backend it names)") from None
    except ValueError as exc:  # fsspec: "Protocol not known: ..."
        raise GenflowError(f"cannot open store '{url}': {exc}") from None
    except zipfile.BadZipFile as exc:
        raise GenflowError(f"store '{url}' is not a readable zip archive ({exc})") from None
    except (FileNotFoundError, OSError) as exc:
        raise GenflowError(f"no genflow store at '{url}': {exc}") from None


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """``fsspec.url_to_fs`` with a missing backend (s3fs, gcsfs, ...) as a ``GenflowError``."""
    try:
        return fsspec.url_to_fs(url, **dict(storage_options or {}))
    except ImportError as exc:
        raise GenflowError(f"cannot open '{url}': {exc} (install the fsspec backend it names)") from None
    except ValueError as exc:  # "Protocol not known: ..."
        raise GenflowError(f"cannot open '{url}': {exc}") from None


class _ArchiveStore(FsspecStore):
    """``FsspecStore`` over an archive filesystem rooted at ``""``: zarr 3.1 lists ``"/<prefix>"``,
    which fsspec's archive filesystems do not resolve, so listings drop the leading slash."""

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.strip("/")
        try:
            entries = await self.fs._ls(prefix, detail=False)
        except FileNotFoundError:
            return
        for entry in entries:
            yield entry.strip("/").removeprefix(prefix).strip("/")

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for entry in await self.fs._find(prefix.strip("/"), detail=False, maxdepth=None, withdirs=False):
            yield entry.strip("/")


@attrs.frozen(kw_only=True)
class AutoencoderMeta:
    """The autoencoder a store was written with; ``shift`` / ``scale`` are per latent channel."""

    name: str
    config: dict[str, Any]
    shift: list[float]
    scale: list[float]
    downsample: int = 1


@attrs.frozen(kw_only=True)
class StoreMeta:
    """The group attribute ``genflow`` of a store."""

    format: str = FORMAT
    version: int = VERSION
    complete: bool = False
    sample_kind: str = "image"
    channels: int
    autoencoder: AutoencoderMeta
    source: dict[str, Any] = attrs.field(factory=dict)
    num_classes: int = 0
    classes: list[str] = attrs.field(factory=list)
    stats: dict[str, Any] = attrs.field(factory=dict)
    plan: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any], url: str) -> StoreMeta:
        try:
            fields = dict(data)
            fields["autoencoder"] = AutoencoderMeta(**fields["autoencoder"])
            return StoreMeta(**fields)
        except (KeyError, TypeError) as exc:
            raise GenflowError(f"store '{url}' has malformed attributes ({exc}); re-run genflow prepare") from None


@attrs.frozen(kw_only=True)
class ChunkData:
    """Rows ``start:stop`` of one bucket, as numpy arrays (``captions`` an object array of str)."""

    start: int
    latents: np.ndarray
    labels: np.ndarray | None = None
    captions: np.ndarray | None = None
    latents_flip: np.ndarray | None = None
    source_index: np.ndarray | None = None


class Bucket:
    """One resolution bucket: its arrays, size and chunking."""

    def __init__(self, key: str, group: zarr.Group, url: str) -> None:
        self.key = key
        self.url = url
        arrays = {name: _open_array(group, name, f"store '{url}': buckets/{key}/{name}") for name in ARRAYS}
        self.arrays: dict[str, zarr.Array] = {name: array for name, array in arrays.items() if array is not None}
        if "latents" not in self.arrays:
            raise GenflowError(f"store '{url}': bucket '{key}' has no latents array; re-run genflow prepare")
        latents = self.arrays["latents"]
        self.count = int(latents.shape[0])
        self.sample_shape: tuple[int, ...] = tuple(int(s) for s in latents.shape[1:])
        self.chunk = int(latents.chunks[0])
        self.pixel_size = parse_bucket_key(key)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.count / self.chunk)

    def validate(self, meta: StoreMeta | None = None) -> None:
        """Equal lengths, equal chunking and every chunk present, and with ``meta`` the arrays'
        dtypes, shapes and label range against it, or a ``GenflowError`` naming the array."""
        if self.count == 0:
            raise GenflowError(f"store '{self.url}': buckets/{self.key} has no samples (an empty bucket); "
                               "re-run genflow prepare")
        if meta is not None:
            check_arrays(self, meta)
        for name, array in self.arrays.items():
            where = f"store '{self.url}': buckets/{self.key}/{name}"
            if array.shape[0] != self.count:
                raise GenflowError(
                    f"{where} has {array.shape[0]} rows but latents has {self.count}; every array of a "
                    "bucket must have one row per sample (re-run genflow prepare)"
                )
            if array.chunks[0] != self.chunk:
                raise GenflowError(f"{where} is chunked by {array.chunks[0]} rows, latents by {self.chunk}")
            if name == "latents_flip" and array.shape != self.arrays["latents"].shape:
                raise GenflowError(f"{where} has shape {array.shape}; latents has {self.arrays['latents'].shape}")
            if array.nchunks_initialized != array.nchunks:
                raise GenflowError(
                    f"{where} is missing {array.nchunks - array.nchunks_initialized} of {array.nchunks} chunks; "
                    "the store is damaged (re-run genflow prepare)"
                )
        if meta is not None and "labels" in self.arrays:  # after the chunk check: a missing chunk reads as -1
            check_labels(self, meta.num_classes)

    def read(self, chunk: int) -> ChunkData:
        """Every array's rows of chunk ``chunk``; a damaged chunk is a ``GenflowError``."""
        start, stop = chunk * self.chunk, min((chunk + 1) * self.chunk, self.count)
        data: dict[str, np.ndarray] = {}
        for name, array in self.arrays.items():
            try:
                data[name] = np.asarray(array[start:stop])
            except Exception as exc:
                raise GenflowError(
                    f"store '{self.url}': chunk {chunk} of buckets/{self.key}/{name} cannot be decoded "
                    f"({type(exc).__name__}: {exc}); the store is corrupted (re-run genflow prepare)"
                ) from None
        if "labels" in data and (data["labels"] < 0).any():
            raise GenflowError(f"store '{self.url}': chunk {chunk} of buckets/{self.key}/labels holds negative labels")
        return ChunkData(start=start, **data)


class LatentStore:
    """A complete, validated store opened for reading."""

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None, validate: bool = True) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        group = open_group(url, storage_options=self.storage_options)
        self.meta = read_meta(group, url)
        check_meta(self.meta, url)
        if not self.meta.complete:
            raise GenflowError(
                f"store '{url}' is incomplete (its genflow prepare did not finish or failed); run the same "
                "genflow prepare again to resume it"
            )
        self.buckets = _buckets(group, url)
        if validate:
            for bucket in self.buckets.values():
                bucket.validate(self.meta)

    def reopen(self) -> LatentStore:
        """The same store opened anew (fresh file handles, e.g. in a DataLoader worker)."""
        return LatentStore(self.url, storage_options=self.storage_options, validate=False)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled as its address (spawned DataLoader workers re-open it).
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(
            LatentStore(state["url"], storage_options=state["storage_options"], validate=False).__dict__
        )

    @property
    def count(self) -> int:
        return sum(b.count for b in self.buckets.values())

    @property
    def has_labels(self) -> bool:
        return all("labels" in b.arrays for b in self.buckets.values())

    @property
    def has_captions(self) -> bool:
        return all("captions" in b.arrays for b in self.buckets.values())

    @property
    def has_flip(self) -> bool:
        return all("latents_flip" in b.arrays for b in self.buckets.values())

    def largest_bucket(self) -> Bucket:
        return max(self.buckets.values(), key=lambda b: (b.count, b.key))


def open_group(url: str, *, storage_options: Mapping[str, Any] | None = None) -> zarr.Group:
    """The store's root group, read-only; a missing store is a ``GenflowError``."""
    store = zarr_store(url, read_only=True, storage_options=storage_options)
    try:
        return zarr.open_group(store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError, KeyError):
        raise GenflowError(f"no genflow store at '{url}'; create one with `genflow prepare --out {url}`") from None
    except zipfile.BadZipFile as exc:
        raise GenflowError(f"store '{url}' is not a readable zip archive ({exc})") from None
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise GenflowError(f"store '{url}': its zarr.json cannot be read ({type(exc).__name__}: {exc})") from None


def read_meta(group: zarr.Group, url: str) -> StoreMeta:
    """The store's ``StoreMeta``; other formats and versions are a ``GenflowError``."""
    data = group.attrs.get(ATTRS_KEY)
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise GenflowError(
            f"'{url}' is a zarr group but not a genflow store (no '{ATTRS_KEY}' attributes of format {FORMAT})"
        )
    if data.get("version") != VERSION:
        raise GenflowError(
            f"store '{url}' has format version {data.get('version')!r}; this genflow reads version {VERSION} "
            "only (re-run genflow prepare)"
        )
    return StoreMeta.from_json(data, url)


def _open_array(group: zarr.Group, name: str, where: str) -> zarr.Array | None:
    """``group[name]`` as an array (None when absent); unknown codecs, bad metadata or another node
    type are one line."""
    try:
        if name not in group:
            return None
        node = group[name]
    except Exception as exc:  # zarr raises many types here (UnknownCodecError, ValueError, ...)
        raise GenflowError(f"{where} cannot be opened ({type(exc).__name__}: {exc}); the store is damaged or "
                           "was not written by genflow (re-run genflow prepare)") from None
    if not isinstance(node, zarr.Array):
        raise GenflowError(f"{where} is a group, not an array; the store is damaged (re-run genflow prepare)")
    return node


def _is_count(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _numbers(values: Any, length: int) -> bool:
    return (isinstance(values, list) and len(values) == length
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values))


def check_meta(meta: StoreMeta, url: str) -> None:
    """The ``genflow`` attributes' types and ranges; a ``GenflowError`` names the attribute."""
    where = f"store '{url}': attribute genflow."
    problems = [
        ("complete", isinstance(meta.complete, bool), "true or false"),
        ("sample_kind", meta.sample_kind in ("image", "points"), "'image' or 'points'"),
        ("channels", _is_count(meta.channels, 1), "an integer >= 1"),
        ("num_classes", _is_count(meta.num_classes, 0), "an integer >= 0"),
        ("classes", isinstance(meta.classes, list) and all(isinstance(c, str) for c in meta.classes)
         and len(meta.classes) in (0, meta.num_classes), "a list of num_classes names (or empty)"),
        ("autoencoder.name", isinstance(meta.autoencoder.name, str) and bool(meta.autoencoder.name), "a name"),
        ("autoencoder.downsample", _is_count(meta.autoencoder.downsample, 1), "an integer >= 1"),
    ]
    for key, ok, expected in problems:
        if not ok:
            raise GenflowError(f"{where}{key} = {_get(meta, key)!r}: expected {expected} (re-run genflow prepare)")
    for key in ("shift", "scale"):
        values = getattr(meta.autoencoder, key)
        if not _numbers(values, meta.channels):
            raise GenflowError(f"{where}autoencoder.{key} = {values!r}: expected {meta.channels} finite numbers "
                               "(one per channel; re-run genflow prepare)")


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def expected_latent_dtype(meta: StoreMeta) -> str:
    """``uint8`` for pixel stores (the ``identity`` autoencoder), a float dtype otherwise."""
    return "uint8" if meta.sample_kind == "image" and meta.autoencoder.name == "identity" else "float"


def check_arrays(bucket: Bucket, meta: StoreMeta) -> None:
    """A bucket's arrays against the metadata: dtypes and sample shapes."""
    where = f"store '{bucket.url}': buckets/{bucket.key}"
    expected = expected_latent_dtype(meta)
    for name in ("latents", "latents_flip"):
        if name not in bucket.arrays:
            continue
        dtype = np.dtype(bucket.arrays[name].dtype)
        if (expected == "float" and dtype.kind != "f") or (expected != "float" and dtype != np.dtype(expected)):
            raise GenflowError(f"{where}/{name} has dtype {dtype}; a store of {meta.sample_kind}s written with "
                               f"autoencoder '{meta.autoencoder.name}' holds {expected} latents")
    ndim = 2 if meta.sample_kind == "points" else 4
    shape = tuple(bucket.arrays["latents"].shape)
    if len(shape) != ndim or shape[1] != meta.channels:
        raise GenflowError(f"{where}/latents has shape {shape}; the metadata says {meta.sample_kind}s of "
                           f"{meta.channels} channels ({ndim} dimensions, (N, {meta.channels}, ...))")
    for name in ("labels", "source_index"):
        if name in bucket.arrays:
            array = bucket.arrays[name]
            if np.dtype(array.dtype).kind not in "iu" or len(array.shape) != 1:
                raise GenflowError(f"{where}/{name} has dtype {array.dtype} and shape {tuple(array.shape)}; "
                                   "expected one integer per sample")
    if "captions" in bucket.arrays and np.dtype(bucket.arrays["captions"].dtype).kind not in "TUO":
        raise GenflowError(f"{where}/captions has dtype {bucket.arrays['captions'].dtype}; expected strings")


def check_labels(bucket: Bucket, num_classes: int) -> None:
    """Every label in ``[0, num_classes)`` (read in full: one integer per sample)."""
    where = f"store '{bucket.url}': buckets/{bucket.key}/labels"
    try:
        labels = np.asarray(bucket.arrays["labels"][:])
    except Exception as exc:
        raise GenflowError(f"{where} cannot be decoded ({type(exc).__name__}: {exc}); the store is corrupted "
                           "(re-run genflow prepare)") from None
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size and num_classes == 0:
        raise GenflowError(f"{where} holds labels but the metadata's num_classes = 0 (an unlabelled store); "
                           "re-run genflow prepare")
    if bad.size:
        raise GenflowError(f"{where} holds {int(bad[0])} (and {bad.size - 1} more outside the range); the "
                           f"metadata's num_classes = {num_classes} allows 0..{num_classes - 1}")


def _buckets(group: zarr.Group, url: str) -> dict[str, Bucket]:
    if "buckets" not in group or not list(cast(zarr.Group, group["buckets"]).group_keys()):
        raise GenflowError(f"store '{url}' has no buckets; re-run genflow prepare")
    parent = cast(zarr.Group, group["buckets"])
    keys = sorted(parent.group_keys(), key=_bucket_order)
    return {key: Bucket(key, cast(zarr.Group, parent[key]), url) for key in keys}


def _bucket_order(key: str) -> tuple[int, int, str]:
    size = parse_bucket_key(key) if key != POINTS_BUCKET else None
    return (size[0] * size[1], size[1], key) if size else (0, 0, key)
