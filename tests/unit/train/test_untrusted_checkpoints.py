"""Untrusted checkpoints: a crafted ``.metadata``, non-tensor value or ``model.pt`` is refused with one
line (exit 2) by every command that loads one, and its payload never runs; genuine checkpoints load."""

from __future__ import annotations

import io
import pathlib
import pickle
import shutil

import pytest
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

from genflow.cli import main
from genflow.errors import GenflowError
from genflow.train import safe_load
from tests.unit.train import crafted

STEP = "checkpoints/step_00000004"
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


@pytest.fixture
def run(tmp_path, finished_run) -> pathlib.Path:
    return shutil.copytree(finished_run, tmp_path / "run")


def refused(capsys, argv: list[str], marker: pathlib.Path, expected: str) -> None:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("genflow: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert not marker.exists(), "the crafted payload ran"


def commands(run: pathlib.Path, out: pathlib.Path) -> dict[str, list[str]]:
    return {
        "train --resume": ["train", "--resume", "--run-dir", str(run), "--no-progress", "train.steps=6"],
        "sample": ["sample", str(run), "--checkpoint", "4", "--num", "8", "--out", str(out)],
        "eval": ["eval", str(run), "--checkpoint", "4", "--steps", "1", "--num", "16", "--no-progress",
                 "--out", str(out.with_name(out.name + "-eval"))],  # its grids would replace sample's
    }


def test_the_payload_is_real(tmp_path, run):
    """Sanity check of the attack: plain pickle (what DCP's reader does) runs the payload."""
    marker = tmp_path / "ran"
    crafted.poison_metadata(run / STEP, marker)
    crafted.trusted_metadata(run / STEP)
    assert marker.exists()


def test_the_optimizer_payload_is_real(tmp_path, run):
    """Sanity check: DCP's default planner unpickles non-tensor values with weights_only=False."""
    marker = tmp_path / "ran"
    crafted.poison_optimizer_value(run / STEP, marker, tmp_path)
    assert not marker.exists()
    state = {"optim": {"param_groups": [{"lr": 0.0}]}}
    dcp.load(state, checkpoint_id=str(run / STEP), no_dist=True, planner=DefaultLoadPlanner(allow_partial_load=True))
    assert marker.exists()


@pytest.mark.parametrize("command", ["train --resume", "sample", "eval"])
def test_crafted_metadata_is_refused(capsys, tmp_path, run, command):
    marker = tmp_path / "ran"
    crafted.poison_metadata(run / STEP, marker)
    refused(capsys, commands(run, tmp_path / "out")[command], marker,
            ".metadata references 'io.open', which DCP checkpoint metadata never holds")


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_crafted_metadata_is_refused_without_final_weights(capsys, tmp_path, run, command):
    """Without ``model.pt``, sample and eval fall back to the latest checkpoint's EMA weights."""
    marker = tmp_path / "ran"
    (run / "model.pt").unlink()
    crafted.poison_metadata(run / STEP, marker)
    argv = [a for a in commands(run, tmp_path / "out")[command] if a not in ("--checkpoint", "4")]
    refused(capsys, argv, marker, "refuses to unpickle")


def test_crafted_optimizer_value_is_refused_on_resume(capsys, tmp_path, run):
    marker = tmp_path / "ran"
    crafted.poison_optimizer_value(run / STEP, marker, tmp_path)
    refused(capsys, commands(run, tmp_path / "out")["train --resume"], marker,
            "value 'optim.param_groups.0.lr' holds objects other than tensors and plain data (it references 'io.open')")


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_crafted_final_weights_are_refused(capsys, tmp_path, run, command):
    marker = tmp_path / "ran"
    crafted.poison_weights(run / "model.pt", marker)
    argv = [a for a in commands(run, tmp_path / "out")[command] if a not in ("--checkpoint", "4")]
    refused(capsys, argv, marker, "model.pt' holds objects other than tensors and plain data")


def test_storage_outside_the_checkpoint_is_refused(capsys, tmp_path, run):
    crafted.escape_storage(run / STEP)
    refused(capsys, commands(run, tmp_path / "out")["train --resume"], tmp_path / "ran",
            "points outside the checkpoint folder ('../../__0_0.distcp')")


@pytest.mark.parametrize("blob", [b"", b"garbage", pickle.dumps({"not": "metadata"}), pickle.dumps(3)[:-1]])
def test_damaged_metadata_is_one_line(tmp_path, run, blob):
    (run / STEP / ".metadata").write_bytes(blob)
    with pytest.raises(GenflowError, match=r"cannot be loaded: \.metadata (is damaged|holds a dict)"):
        safe_load.read_dcp_metadata(run / STEP)


@pytest.mark.parametrize("name", ["builtins.eval", "os.system", "subprocess.Popen", "torch.load",
                                  "torch._utils._rebuild_tensor_v2", "torch.distributed.checkpoint.metadata.os",
                                  "torch.serialization.load", "pathlib.Path.write_text"])
def test_the_metadata_unpickler_refuses_other_classes(name):
    module, _, attr = name.rpartition(".")
    blob = b"\x80\x04\x95" + b"\x00" * 8 + b"\x8c" + bytes([len(module)]) + module.encode() + b"\x94\x8c" + \
        bytes([len(attr)]) + attr.encode() + b"\x94\x93\x94."
    with pytest.raises(safe_load.UnsafeFileError, match=f"references '{name}'"):
        safe_load.MetadataUnpickler(io.BytesIO(blob), "test").load()


def test_genuine_checkpoints_still_load(capsys, tmp_path, run):
    metadata = safe_load.read_dcp_metadata(run / STEP)
    assert metadata.state_dict_metadata.keys() == crafted.trusted_metadata(run / STEP).state_dict_metadata.keys()
    for argv in commands(run, tmp_path / "out").values():
        assert main(argv) == 0, capsys.readouterr().err
    assert (run / "checkpoints" / "step_00000006").is_dir()
    assert safe_load.load_weights(run / "model.pt")["model"]
