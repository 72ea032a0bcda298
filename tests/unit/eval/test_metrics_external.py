"""Frechet distances in user-given networks: the error paths, and the pipeline on tiny networks."""

from __future__ import annotations

import hashlib
import importlib.util
import math

import pytest
import torch
from torch import nn

from genflow.components.paths import LinearPath
from genflow.errors import GenflowError
from genflow.eval.metrics_external import DinoV2FD, ExternalFeatureConfig, InceptionFID
from genflow.interfaces import Batch, Dataset, DataSpec, EvalContext, EvalSamples


class Images(Dataset):
    """Random 3x16x16 'images' in [-1, 1]."""

    spec = DataSpec(shape=(3, 16, 16))

    def loader(self, **_):  # pragma: no cover - not used
        raise NotImplementedError

    def reference(self, n, *, seed):
        return Batch(x=torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1)


class Pool(nn.Module):
    """A stand-in feature network: per-channel means and standard deviations."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1)


def _context() -> EvalContext:
    return EvalContext(dataset=Images(), path=LinearPath(), seed=0)


def _samples(scale: float) -> EvalSamples:
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return EvalSamples(samples=x * scale, noise=torch.zeros(64, 3, 16, 16))


def test_without_weights_the_metric_never_runs_by_default_and_explains_itself():
    metric = InceptionFID(ExternalFeatureConfig())
    assert not metric.applies_to(Images())
    with pytest.raises(GenflowError, match="needs local weights of Inception-v3.*fid_inception.weights=PATH"):
        metric.prepare(_context())
    with pytest.raises(GenflowError, match="does not exist"):
        InceptionFID(ExternalFeatureConfig(weights="/nonexistent.pt")).prepare(_context())


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed")
def test_a_non_torchscript_inception_file_needs_torch_fidelity(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(GenflowError, match=r"pip install torch-fidelity"):
        InceptionFID(ExternalFeatureConfig(weights=str(path))).prepare(_context())


def test_fd_dinov2_on_an_exported_network(tmp_path):
    path = tmp_path / "net.pt2"
    batch = torch.export.Dim("batch")
    program = torch.export.export(Pool(), (torch.zeros(2, 3, 224, 224),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    metric = DinoV2FD(ExternalFeatureConfig(weights=str(path), reference=256))
    assert metric.applies_to(Images())
    context = _context()
    metric.prepare(context)
    close, far = metric(_samples(1.0), context), metric(_samples(0.3), context)
    assert math.isfinite(close) and 0 <= close < far
    assert metric.provenance(context) == {"weights": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_fid_inception_on_a_torchscript_network(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(Pool()).save(str(path))
    metric = InceptionFID(ExternalFeatureConfig(weights=str(path), reference=256))
    context = _context()
    assert 0 <= metric(_samples(1.0), context) < metric(_samples(0.3), context)


def test_a_broken_network_file_is_one_line(tmp_path):
    path = tmp_path / "junk.pt2"
    path.write_bytes(b"not a network")
    with pytest.raises(GenflowError, match="is not a torch.export"):
        DinoV2FD(ExternalFeatureConfig(weights=str(path))).prepare(_context())
