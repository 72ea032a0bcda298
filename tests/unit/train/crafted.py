"""Crafted (malicious) checkpoints and weights files: each hides a pickle whose ``__reduce__`` creates
a marker file when something unpickles it without restrictions."""

from __future__ import annotations

import pathlib
import pickle
import shutil
import warnings

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker's existence proves code ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.marker, "w"))


def trusted_metadata(checkpoint: pathlib.Path):  # noqa: ANN201
    """The checkpoint's own metadata, read with plain pickle (the test wrote it: trusted)."""
    with (checkpoint / ".metadata").open("rb") as f:
        return pickle.load(f)


def poison_metadata(checkpoint: pathlib.Path, marker: pathlib.Path) -> None:
    """Keep the real metadata but hide a payload in it: an unrestricted load runs the payload and
    then loads the checkpoint as if nothing had happened."""
    metadata = trusted_metadata(checkpoint)
    metadata.storage_meta.modules = [Payload(marker)]
    (checkpoint / ".metadata").write_bytes(pickle.dumps(metadata))


def escape_storage(checkpoint: pathlib.Path) -> None:
    """Metadata whose storage entries point outside the checkpoint folder."""
    metadata = trusted_metadata(checkpoint)
    for info in metadata.storage_data.values():
        info.relative_path = "../../" + info.relative_path
    (checkpoint / ".metadata").write_bytes(pickle.dumps(metadata))


def poison_optimizer_value(checkpoint: pathlib.Path, marker: pathlib.Path, scratch: pathlib.Path) -> None:
    """Rewrite the checkpoint with the optimizer's learning rate replaced by a payload: its metadata
    is clean, the payload sits in a non-tensor value that DCP's default planner would unpickle with
    ``weights_only=False``."""
    flat = scratch / "flat.pt"
    dcp_to_torch_save(checkpoint, flat)
    state = torch.load(flat, weights_only=False)  # written just above from the test's own checkpoint
    state["optim"]["param_groups"][0]["lr"] = Payload(marker)
    rewritten = scratch / "rewritten"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save(state, checkpoint_id=str(rewritten), no_dist=True)
    for name in [".metadata", *(p.name for p in checkpoint.glob("*.distcp"))]:
        (checkpoint / name).unlink()
    for path in rewritten.iterdir():
        shutil.copy(path, checkpoint / path.name)


def poison_weights(path: pathlib.Path, marker: pathlib.Path) -> None:
    """A ``model.pt`` that is a torch file, but whose ``model`` entry is a payload."""
    torch.save({"config": "", "model": Payload(marker)}, path)
