"""A small CNN classifier of ``shapes`` images: the feature space of the shapes metrics.

It predicts the 16 classes ``shape_index * len(colours) + colour_index`` (so shape and colour too)
and its penultimate layer (``features``, 128 ReLU units) is the feature space of the Frechet
distance and of precision / recall on ``shapes``. Training is reproducible and takes well under a
minute on a laptop CPU; the weights are cached under ``$GENFLOW_CACHE/classifiers/`` keyed by the
config, with a JSON sidecar recording the config, the held-out accuracy and the SHA-256 of the
weights file, which is verified on every load (``torch.load(weights_only=True)``).

Train (or re-train) one explicitly::

    python -m genflow.eval.classifier                          # the default: 32x32, plain background
    python -m genflow.eval.classifier --option resolution=64 --out shapes64-classifier.pt

Metrics otherwise train the classifier on first use, once, under a file lock.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import attrs
import torch
from filelock import FileLock
from torch import Tensor, nn

from genflow.data.shapes import ShapesConfig, render_scenes, scene_attributes, validate
from genflow.data.sources import digest
from genflow.errors import GenflowError
from genflow.eval.corrupt import add_noise, blur
from genflow.eval.threads import one_thread

_DEFAULT_SHAPES = ShapesConfig()
#: Bumped when the architecture or the training procedure changes (part of the cache key).
VERSION = 1


@attrs.frozen(kw_only=True)
class ClassifierConfig:
    """What the classifier sees (``resolution``, ``shapes``, ``colours``, ``background``: taken from
    the evaluated dataset) and how it is trained. Training scenes come from the shapes generator
    with ``seed`` (the datasets' default seed is 0): indices ``[0, train_count)`` train,
    ``[train_count, train_count + test_count)`` are held out. Augmentation: per-image Gaussian noise
    of std ``U(0, noise)`` and, on a random half of each batch, a Gaussian blur of std ``U(0, blur)``
    pixels, so the classifier judges shape and colour rather than the fine texture of samples."""

    resolution: int = 32
    shapes: tuple[str, ...] = _DEFAULT_SHAPES.shapes
    colours: tuple[str, ...] = _DEFAULT_SHAPES.colours
    background: Literal["plain", "textured", "mixed"] = "plain"
    train_count: int = 4000
    test_count: int = 2000
    epochs: int = 4
    batch_size: int = 64
    lr: float = 3e-3
    noise: float = 0.15
    blur: float = 1.0
    width: int = 16
    features: int = 128
    seed: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.shapes) * len(self.colours)

    def shapes_config(self, count: int) -> ShapesConfig:
        """The generator of the training and held-out scenes."""
        return ShapesConfig(resolution=self.resolution, count=count, seed=self.seed, shapes=self.shapes,
                            colours=self.colours, background=self.background)

    def key(self) -> str:
        """Cache key: a hash of every field and the procedure version."""
        return digest({"version": VERSION, **attrs.asdict(self)})[:16]


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class ConvClassifier(nn.Module):
    """Conv-BN-ReLU stages (``width``, ``2 width``, ``4 width``, ``4 width`` channels) with a
    max-pooling after each of the first ``pools``, global average pooling, a ``features``-unit ReLU
    embedding (the features) and a linear class head. Takes pixels in [-1, 1], ``(N, channels, H, W)``."""

    def __init__(self, *, channels: int, num_classes: int, width: int, features: int, pools: int = 3) -> None:
        super().__init__()
        c = width
        stages = [(channels, c), (c, 2 * c), (2 * c, 4 * c)]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(stages):
            layers += [*_conv(c_in, c_out), *([nn.MaxPool2d(2)] if i < pools else [])]
        self.body = nn.Sequential(*layers, *_conv(4 * c, 4 * c), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed = nn.Sequential(nn.Linear(4 * c, features), nn.ReLU())
        self.head = nn.Linear(features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """``(N, features)``: the penultimate layer."""
        return self.embed(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(N, num_classes)``."""
        return self.head(self.features(x))


def pools_for(size: int) -> int:
    """Max-poolings for images whose shorter side is ``size``: at most 3, leaving at least 2 pixels."""
    return max(0, min(3, size.bit_length() - 2))


class ShapesClassifier(ConvClassifier):
    """The shapes classifier: RGB input, three poolings, ``config.num_classes`` classes (any size)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(channels=3, num_classes=config.num_classes, width=config.width, features=config.features)


@attrs.frozen(kw_only=True)
class TrainedClassifier:
    """A classifier in eval mode with its config and provenance (``path``, ``sha256``, held-out
    ``accuracy``)."""

    model: ShapesClassifier
    config: ClassifierConfig
    path: pathlib.Path
    sha256: str
    accuracy: float

    @torch.no_grad()
    def features(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Features ``(N, D)`` of pixels in [-1, 1] (on the model's device), float32 on the CPU."""
        device = next(self.model.parameters()).device
        with one_thread() if device.type == "cpu" else contextlib.nullcontext():
            return torch.cat([self.model.features(images[i:i + batch_size].to(device).float()).cpu()
                              for i in range(0, images.shape[0], batch_size)])

    @torch.no_grad()
    def classify(self, features: Tensor) -> Tensor:
        """Predicted class ids ``(N,)`` on the CPU from ``features`` (see :meth:`features`)."""
        return self.model.head(features.to(next(self.model.parameters()).device)).argmax(1).cpu()

    def predict(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Predicted class ids ``(N,)`` of pixels in [-1, 1], on the CPU."""
        return self.classify(self.features(images, batch_size))


# ------------------------------------------------------------------------------------------------
# data and training
# ------------------------------------------------------------------------------------------------


def render_labelled(config: ShapesConfig, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Images ``(N, 3, H, W)`` in [-1, 1] and class labels ``(N,)`` of scenes ``indices``."""
    scenes = [scene_attributes(config, int(i)) for i in indices]
    pixels = torch.from_numpy(render_scenes(scenes)).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = torch.tensor([s.label for s in scenes], dtype=torch.long)
    return pixels, labels


def held_out(config: ClassifierConfig) -> tuple[Tensor, Tensor]:
    """The held-out images and labels (never seen in training)."""
    total = config.train_count + config.test_count
    return render_labelled(config.shapes_config(total), range(config.train_count, total))


@torch.no_grad()
def accuracy(model: ShapesClassifier, images: Tensor, labels: Tensor, batch_size: int = 256) -> float:
    """Fraction of ``images`` classified as ``labels``."""
    model.eval()
    predictions = torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])
    return float((predictions == labels).double().mean())


class Corruption(Protocol):
    """What :func:`augment` reads of a config: noise std and blur std bounds."""

    @property
    def noise(self) -> float: ...

    @property
    def blur(self) -> float: ...


def augment(images: Tensor, config: Corruption, generator: torch.Generator) -> Tensor:
    """Random blur on half the batch, then per-image noise (see ``ClassifierConfig``)."""
    n = images.shape[0]
    if config.blur > 0:
        half = torch.randperm(n, generator=generator)[: n // 2]
        sigma = float(torch.rand((), generator=generator)) * config.blur
        images = images.clone()
        images[half] = blur(images[half], sigma)
    if config.noise > 0:
        images = add_noise(images, torch.rand(n, generator=generator) * config.noise, generator)
    return images


def train(config: ClassifierConfig, *, progress: bool = False) -> tuple[ShapesClassifier, float]:
    """Train from scratch (Adam, cosine learning rate, cross-entropy); returns the model in eval mode
    and its held-out accuracy. Reproducible: every random draw comes from ``config.seed``, and it
    runs on one CPU thread (see :func:`genflow.eval.threads.one_thread`)."""
    with one_thread():
        return _train(config, progress=progress)


def _train(config: ClassifierConfig, *, progress: bool) -> tuple[ShapesClassifier, float]:
    validate(config.shapes_config(1))
    total = config.train_count + config.test_count
    images, labels = render_labelled(config.shapes_config(total), range(config.train_count))
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ShapesClassifier(config)
    steps_per_epoch = max(1, config.train_count // config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(config.train_count, generator=generator)
        for step in range(steps_per_epoch):
            rows = order[step * config.batch_size:(step + 1) * config.batch_size]
            loss = nn.functional.cross_entropy(model(augment(images[rows], config, generator)), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        if progress:
            print(f"classifier: epoch {epoch + 1}/{config.epochs}, loss {loss.item():.4f}", file=sys.stderr)
    test_images, test_labels = held_out(config)
    return model.eval(), accuracy(model, test_images, test_labels)


# ------------------------------------------------------------------------------------------------
# files: weights + sidecar with checksum
# ------------------------------------------------------------------------------------------------


def sha256_file(path: pathlib.Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar(path: pathlib.Path) -> pathlib.Path:
    """``x.pt`` -> ``x.json``: config, held-out accuracy, SHA-256 of the weights."""
    return path.with_suffix(".json")


def save(model: ShapesClassifier, config: ClassifierConfig, accuracy_: float, path: pathlib.Path) -> str:
    """Write the weights and their sidecar (weights first, sidecar last); returns the SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.partial")
    torch.save({"model": model.state_dict()}, partial)
    partial.replace(path)
    checksum = sha256_file(path)
    meta = {"config": attrs.asdict(config), "version": VERSION, "accuracy": accuracy_, "sha256": checksum}
    sidecar(path).write_text(json.dumps(meta, indent=2) + "\n")
    return checksum


def load(path: pathlib.Path, device: torch.device | None = None) -> TrainedClassifier:
    """Load weights whose SHA-256 matches their sidecar; a clear ``GenflowError`` otherwise."""
    meta_path = sidecar(path)
    if not path.is_file() or not meta_path.is_file():
        raise GenflowError(f"shapes classifier '{path}' or its checksum file '{meta_path.name}' is missing; "
                           "train one with: python -m genflow.eval.classifier --out PATH")
    try:
        meta = json.loads(meta_path.read_text())
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
        config = ClassifierConfig(**fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise GenflowError(f"'{meta_path}' is not a shapes classifier description: {exc}") from None
    checksum = sha256_file(path)
    if checksum != meta.get("sha256"):
        raise GenflowError(f"shapes classifier '{path}' fails its checksum (sha256 {checksum[:12]}..., "
                           f"expected {str(meta.get('sha256'))[:12]}...); delete it to retrain")
    model = ShapesClassifier(config)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    except Exception as exc:  # a foreign file with a matching sidecar: one line, not a traceback
        raise GenflowError(f"'{path}' is not a shapes classifier for its config: {str(exc)[:200]}") from None
    model.to(device or torch.device("cpu")).eval()
    return TrainedClassifier(model=model, config=config, path=path, sha256=checksum, accuracy=float(meta["accuracy"]))


def cached_path(config: ClassifierConfig, cache_dir: pathlib.Path) -> pathlib.Path:
    """``<cache>/classifiers/shapes-<key>.pt``."""
    return cache_dir / "classifiers" / f"shapes-{config.key()}.pt"


def load_or_train(config: ClassifierConfig, cache_dir: pathlib.Path, *, device: torch.device | None = None,
                  progress: bool = True) -> TrainedClassifier:
    """The cached classifier for ``config``, trained and cached first if missing (under a file lock)."""
    path = cached_path(config, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.is_file() or not sidecar(path).is_file():
            if progress:
                print(f"genflow: training the shapes classifier (once, cached as {path})", file=sys.stderr)
            model, acc = train(config, progress=progress)
            save(model, config, acc, path)
    return load(path, device)


# ------------------------------------------------------------------------------------------------
# python -m genflow.eval.classifier
# ------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Train a classifier reproducibly, write weights + sidecar, print accuracy and SHA-256."""
    from genflow.components.build import cache_dir
    from genflow.data.prepare import parse_options, structure

    parser = argparse.ArgumentParser(prog="python -m genflow.eval.classifier", description=main.__doc__)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help=f"a ClassifierConfig field: {', '.join(f.name for f in attrs.fields(ClassifierConfig))}")
    parser.add_argument("--out", help="weights file (default: the cache entry metrics use)")
    args = parser.parse_args(argv)
    try:
        config = structure(ClassifierConfig, parse_options(args.option), "the shapes classifier")
        path = pathlib.Path(args.out) if args.out else cached_path(config, cache_dir())
        start = time.perf_counter()
        model, acc = train(config, progress=True)
        checksum = save(model, config, acc, path)
    except GenflowError as exc:
        print(f"genflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"held-out accuracy {acc:.4f} on {config.test_count} images; trained in {time.perf_counter() - start:.1f} s")
    print(f"weights: {path}\nsha256: {checksum}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
