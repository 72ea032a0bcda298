"""Reading checkpoints and weights files that may come from anywhere, without running their code.

A ``torch.distributed.checkpoint`` (DCP) checkpoint is not plain data: its ``.metadata`` file is a
pickle that DCP reads with ``pickle.load``, and DCP's default planner reads every non-tensor value
(an optimizer's learning rate, betas, ...) with ``torch.load(weights_only=False)``. Either would run
code hidden in a checkpoint downloaded from the internet. genflow reads them differently:

- ``.metadata`` goes through :class:`MetadataUnpickler`, which resolves only the classes DCP's
  metadata is made of (``torch.distributed.checkpoint.metadata``, its file-system storage info,
  ``torch.Size``, dtypes, layouts, paths) and refuses any other; the storage entries must name
  files inside the checkpoint folder;
- non-tensor values load with ``torch.load(weights_only=True)`` (:class:`SafeLoadPlanner`); DCP
  already loads tensors that way;
- plain weights files (``model.pt``) load with ``torch.load(weights_only=True)``
  (:func:`load_weights`).

Everything refused is one ``GenflowError`` line (exit code 2).
"""

from __future__ import annotations

import collections
import io
import pathlib
import pickle
import re
from collections.abc import Callable
from typing import IO, Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.planner import ReadItem

from genflow.errors import GenflowError

METADATA_FILE = ".metadata"

#: ``(module, name)`` pairs a DCP ``.metadata`` pickle may reference (what torch 2.13 writes; a torch
#: that adds a class to DCP metadata gets a refusal naming it, to be added here after review).
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{("torch.distributed.checkpoint.metadata", name): getattr(dcp_metadata, name) for name in (
        "Metadata", "StorageMeta", "MetadataIndex", "TensorStorageMetadata", "BytesStorageMetadata",
        "ChunkStorageMetadata", "TensorProperties", "_MEM_FORMAT_ENCODING")},
    ("torch", "Size"): torch.Size,
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,  # looks up torch.<layout>
    ("pathlib", "PosixPath"): pathlib.PosixPath,  # StorageMeta.checkpoint_id
    ("pathlib", "PurePosixPath"): pathlib.PurePosixPath,
    ("pathlib", "PureWindowsPath"): pathlib.PureWindowsPath,
    ("pathlib", "WindowsPath"): pathlib.PureWindowsPath,  # saved on Windows: kept as an inert pure path
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"): _StorageInfo,  # where each value is stored
}


def _dtype_or_layout(module: str, name: str) -> Any:
    """``torch.float32``, ``torch.bfloat16``, ... and ``torch.strided``: inert values, not callables."""
    if module == "torch" and not name.startswith("_"):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype | torch.layout):
            return value
    return None


class UnsafeFileError(GenflowError):
    """A checkpoint or weights file holds something other than plain data."""


class MetadataUnpickler(pickle.Unpickler):
    """An unpickler for DCP metadata: any class outside ``_ALLOWED_GLOBALS`` (and torch's dtypes and
    layouts) is refused before it is imported, so a crafted ``__reduce__`` never runs."""

    def __init__(self, file: IO[bytes], where: str) -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name)) or _dtype_or_layout(module, name)
        if found is None:
            raise UnsafeFileError(
                f"{self.where} references '{module}.{name}', which DCP checkpoint metadata never holds; "
                "genflow refuses to unpickle it (a crafted checkpoint can run code when loaded)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self.where} holds a persistent reference, which DCP checkpoint metadata never holds")


def read_dcp_metadata(checkpoint: pathlib.Path, filename: str = METADATA_FILE) -> dcp_metadata.Metadata:
    """The ``Metadata`` of the DCP checkpoint folder ``checkpoint``, read by :class:`MetadataUnpickler`
    and checked (a ``Metadata`` object whose storage entries name files inside the folder)."""
    path = checkpoint / filename
    where = f"checkpoint '{checkpoint}': {filename}"
    if not path.is_file():
        raise GenflowError(f"checkpoint '{checkpoint}' cannot be loaded: it has no {filename} (not a complete "
                           "DCP checkpoint)")
    try:
        with path.open("rb") as f:
            metadata = MetadataUnpickler(f, where).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # truncated, not a pickle, a class given the wrong arguments, ...
        raise GenflowError(f"checkpoint '{checkpoint}' cannot be loaded: {filename} is damaged or not DCP "
                           f"metadata ({one_line(exc)})") from None
    if not isinstance(metadata, dcp_metadata.Metadata):
        raise GenflowError(f"checkpoint '{checkpoint}' cannot be loaded: {filename} holds a "
                           f"{type(metadata).__name__}, not DCP checkpoint metadata")
    _check_storage(metadata, where)
    return metadata


def _check_storage(metadata: dcp_metadata.Metadata, where: str) -> None:
    """Every storage entry is a ``_StorageInfo`` naming a plain file of the checkpoint folder."""
    storage = metadata.storage_data
    if not isinstance(storage, dict):
        raise GenflowError(f"{where} has no storage table; this is not a DCP file-system checkpoint")
    for info in storage.values():
        name = getattr(info, "relative_path", None)
        if not isinstance(info, _StorageInfo) or not isinstance(name, str):
            raise GenflowError(f"{where} has a storage entry of type {type(info).__name__}; expected file entries")
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise UnsafeFileError(f"{where} points outside the checkpoint folder ('{name[:100]}'); genflow refuses it")


class SafeFileSystemReader(FileSystemReader):
    """DCP's file-system reader with :func:`read_dcp_metadata` in place of ``pickle.load``."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> dcp_metadata.Metadata:
        rank = kwargs.get("rank")
        filename = METADATA_FILE if rank is None else f"__{rank}{METADATA_FILE}"
        metadata = read_dcp_metadata(pathlib.Path(self.path), filename)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        assert metadata.storage_meta is not None
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner, but a non-tensor value must load with ``weights_only=True``
    (tensors, numbers, strings, containers) before DCP reads it."""

    def __init__(self, checkpoint: pathlib.Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint = checkpoint

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        where = f"checkpoint '{self.checkpoint}': value '{read_item.dest_index.fqn}'"
        _weights_only(lambda: torch.load(value, weights_only=True), where)
        value.seek(0)  # checked: DCP's own (unrestricted) load now sees plain data only
        super().load_bytes(read_item, value)


def load_weights(path: pathlib.Path, what: str = "weights file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; anything else in the file is refused
    with one line (``UnsafeFileError``), a damaged file too (``GenflowError``)."""
    return _weights_only(lambda: torch.load(path, map_location="cpu", weights_only=True), f"{what} '{path}'")


def _weights_only(load: Callable[[], Any], where: str) -> Any:
    try:
        return load()
    except pickle.UnpicklingError as exc:  # weights_only refused a global, or the bytes are no pickle
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text or "Unsupported operand" in text:
            raise UnsafeFileError(f"{where} holds objects other than tensors and plain data "
                                  f"({_refused_global(text)}); genflow refuses to unpickle it") from None
        raise GenflowError(f"{where} is damaged or not a torch file ({one_line(exc)})") from None
    except Exception as exc:  # a truncated zip, a file that is no torch file at all, ...
        raise GenflowError(f"{where} is damaged or not a torch file ({one_line(exc)})") from None


def _refused_global(text: str) -> str:
    """What torch's weights-only unpickler refused, from its (long, multi-line) message."""
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it references '{found.group(1)}'"
    found = re.search(r"Unsupported operand \d+", text)
    return found.group(0) if found else "an object torch's weights-only loader does not allow"


def one_line(exc: BaseException | str, limit: int = 200) -> str:
    """An exception's text on one line (GenflowError messages are one line), at most ``limit`` long."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]
