"""Frechet distances in the feature space of a pretrained network whose weights the user provides.

genflow never downloads weights. ``fid_inception`` (Heusel et al. 2017) and ``fd_dinov2`` (Stein
et al. 2023) take a local file through the metric option ``weights``::

    genflow eval RUN --metrics fid_inception --metric-option fid_inception.weights=inception-2015-12-05.pt

``fid_inception`` accepts NVIDIA's TorchScript Inception ``inception-2015-12-05.pt`` (the network of
StyleGAN2-ADA, EDM and clean-fid: uint8-valued images of any size in, 2048 pool features out) or,
when ``torch-fidelity`` is installed, its ``pt_inception-2015-12-05-*.pth`` weights. ``fd_dinov2``
accepts a feature network saved with ``torch.export.save`` (``.pt2``) or as TorchScript (``.pt``)
that maps ImageNet-normalised 224x224 RGB to ``(N, D)`` features (e.g. DINOv2 ViT-L/14's class token;
export it with a dynamic batch dimension: ``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``).
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor
from torch.nn import functional

from genflow.config.domains import non_negative, positive, text
from genflow.errors import GenflowError
from genflow.eval.classifier import sha256_file
from genflow.eval.frechet import feature_stats, frechet_distance
from genflow.interfaces import Dataset, EvalContext, EvalSamples, Metric

FeatureFn = Callable[[Tensor], Tensor]
REFERENCE_SEED_OFFSET = 7
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@attrs.frozen(kw_only=True)
class ExternalFeatureConfig:
    """``weights``: a local network file (required; never downloaded); ``reference``: real images
    (0: as many as samples); ``batch_size``: images per network call."""

    weights: str = attrs.field(default="", validator=text(empty=True))
    reference: int = attrs.field(default=5000, validator=non_negative())
    batch_size: int = attrs.field(default=64, validator=positive())


def load_module(path: pathlib.Path, device: torch.device) -> Callable[..., Tensor]:
    """A network saved with ``torch.export.save`` (``.pt2``) or as TorchScript (other suffixes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load warns on recent torch
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module().to(device)
        return torch.jit.load(str(path), map_location=device).eval()


class ExternalFrechet(Metric):
    """Frechet distance between network features of samples and of real images of the run's data."""

    name = "external"
    what = "a feature network"

    def __init__(self, config: ExternalFeatureConfig) -> None:
        self.config = config

    def applies_to(self, dataset: Dataset) -> bool:
        # Only with weights: without them it is never part of the default metric list.
        return dataset.spec.is_image and bool(self.config.weights)

    def weights_path(self) -> pathlib.Path:
        """The weights file; a one-line error when it is not given or not there."""
        if not self.config.weights:
            raise GenflowError(f"metric '{self.name}' needs local weights of {self.what}: pass "
                               f"--metric-option {self.name}.weights=PATH (genflow never downloads weights)")
        path = pathlib.Path(self.config.weights).expanduser()
        if not path.is_file():
            raise GenflowError(f"metric '{self.name}': weights file '{path}' does not exist")
        return path

    def load(self, path: pathlib.Path, device: torch.device) -> FeatureFn:
        """``pixels in [-1, 1] -> (N, D)`` features."""
        raise NotImplementedError

    def prepare(self, context: EvalContext) -> None:
        if not context.dataset.spec.is_image:
            raise GenflowError(f"metric '{self.name}' applies to image data only")
        self.network(context)

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        path = self.weights_path()
        return {"weights": str(path), "sha256": context.memo(f"{self.name}/sha256/{path}", lambda: sha256_file(path))}

    def network(self, context: EvalContext) -> FeatureFn:
        path = self.weights_path()
        return context.memo(f"{self.name}/network/{path}", lambda: self.load(path, context.device))

    def features(self, images: Tensor, context: EvalContext) -> Tensor:
        net, size = self.network(context), self.config.batch_size
        with torch.no_grad():
            return torch.cat([net(images[i:i + size].to(context.device)).float().cpu()
                              for i in range(0, images.shape[0], size)])

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        n = self.config.reference or batch.samples.shape[0]
        real = context.memo(f"{self.name}/reference_stats/{n}",
                            lambda: feature_stats(self.features(_reference(context, n), context)))
        return frechet_distance(feature_stats(self.features(batch.samples, context)), real)


def _reference(context: EvalContext, n: int) -> Tensor:
    x = context.dataset.reference(n, seed=context.seed + REFERENCE_SEED_OFFSET).x
    return torch.cat([context.dataset.decode(x[i:i + 256].to(context.device)).cpu() for i in range(0, n, 256)])


def _to_uint8_range(images: Tensor) -> Tensor:
    """Pixels in [-1, 1] -> values 0..255 (rounded, as if saved as 8-bit images), RGB."""
    x = ((images.clamp(-1, 1) + 1) * 127.5).round()
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x[:, :3]


class InceptionFID(ExternalFrechet):
    """FID: Frechet distance of Inception-v3 pool features (2048-D)."""

    name = "fid_inception"
    what = "Inception-v3 (NVIDIA's TorchScript inception-2015-12-05.pt, or torch-fidelity's .pth)"

    def load(self, path: pathlib.Path, device: torch.device) -> FeatureFn:
        try:
            net = load_module(path, device)
        except Exception:  # not TorchScript: torch-fidelity's state dict
            return _torch_fidelity_inception(path, device)

        def features(images: Tensor) -> Tensor:
            return net(_to_uint8_range(images), return_features=True)

        return features


def _torch_fidelity_inception(path: pathlib.Path, device: torch.device) -> FeatureFn:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise GenflowError(f"metric 'fid_inception': '{path}' is not TorchScript; reading torch-fidelity weights "
                           "needs torch-fidelity (pip install torch-fidelity)") from None
    try:
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    except Exception as exc:
        raise GenflowError(f"metric 'fid_inception': '{path}' is not an Inception-v3 weights file: "
                           f"{str(exc)[:200]}") from None
    net = net.to(device).eval()

    def features(images: Tensor) -> Tensor:
        return net(_to_uint8_range(images).to(torch.uint8))[0]

    return features


class DinoV2FD(ExternalFrechet):
    """FD-DINOv2: Frechet distance of DINOv2 features (Stein et al. 2023)."""

    name = "fd_dinov2"
    what = "a DINOv2 feature network (saved with torch.export.save as .pt2, or TorchScript)"

    def load(self, path: pathlib.Path, device: torch.device) -> FeatureFn:
        try:
            net = load_module(path, device)
        except Exception as exc:
            raise GenflowError(f"metric 'fd_dinov2': '{path}' is not a torch.export (.pt2) or TorchScript "
                               f"network: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
        mean = torch.tensor(_IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=device).view(1, 3, 1, 1)

        def features(images: Tensor) -> Tensor:
            x = _to_uint8_range(images) / 255.0  # as saved 8-bit images, then ImageNet preprocessing
            x = functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
            return net((x - mean) / std)

        return features
