"""A classifier of any labelled image store, trained on the store's own training split: the feature
space of ``fd_store`` and the judge of ``class_accuracy_store`` (:mod:`genflow.eval.metrics_store`).

Nothing is downloaded. The network is :class:`genflow.eval.classifier.ConvClassifier` (the shapes
classifier's architecture, with as many input channels as the store and fewer poolings for small
images). It trains on up to ``train_count`` images of the store's largest bucket, decoded to pixels
in [-1, 1] by the store's autoencoder, with the shapes classifier's augmentation (noise, blur).
Its held-out accuracy is measured on the held-out store written by ``genflow prepare --holdout``
when there is one (:mod:`genflow.data.splits`); otherwise a ``validation`` fraction of the training
images is kept out of training and measured instead. Weights are cached under
``$GENFLOW_CACHE/classifiers/store-<key>.pt``, keyed by this config and the stores' plans (their
content fingerprints), with a JSON sidecar (config, accuracy, SHA-256 of the weights) verified on
every load.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import attrs
import numpy as np
import torch
from filelock import FileLock
from torch import Tensor, nn

from genflow.data.dataset import StoreDataset
from genflow.data.reader import RowReader
from genflow.data.sources import digest
from genflow.data.store import LatentStore
from genflow.errors import GenflowError
from genflow.eval.classifier import ConvClassifier, augment, pools_for, sha256_file, sidecar
from genflow.eval.store_metric_configs import StoreClassifierConfig
from genflow.eval.threads import one_thread

#: Bumped when the architecture or the training procedure changes (part of the cache key).
VERSION = 1


@attrs.frozen(kw_only=True)
class LabelledImages:
    """Pixels ``(N, C, H, W)`` in [-1, 1] (float32) and class ids ``(N,)``."""

    images: Tensor
    labels: Tensor


@attrs.frozen(kw_only=True)
class StoreClassifier:
    """A trained classifier in eval mode with its provenance: weights ``path``, ``sha256``,
    ``accuracy`` (held out) and ``accuracy_on`` (which images that accuracy was measured on)."""

    model: ConvClassifier
    path: pathlib.Path
    sha256: str
    accuracy: float
    accuracy_on: str

    @torch.no_grad()
    def features(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Features ``(N, D)`` of pixels in [-1, 1], float32 on the CPU."""
        device = next(self.model.parameters()).device
        with one_thread():
            return torch.cat([self.model.features(images[i:i + batch_size].to(device).float()).cpu()
                              for i in range(0, images.shape[0], batch_size)])

    @torch.no_grad()
    def classify(self, features: Tensor) -> Tensor:
        """Predicted class ids ``(N,)`` on the CPU from :meth:`features`."""
        return self.model.head(features.to(next(self.model.parameters()).device)).argmax(1).cpu()


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


def decoded_rows(store: LatentStore, rows: np.ndarray, chunk: int = 512) -> LabelledImages:
    """Rows ``rows`` of ``store``'s largest bucket as pixels in [-1, 1] with their labels (-1: none)."""
    dataset = StoreDataset(store, condition="none")
    batch = RowReader(store, cache_chunks=1).read(store.largest_bucket().key, rows.astype(np.int64))
    images = torch.cat([dataset.decode(batch.x[i:i + chunk].float()).cpu() for i in range(0, len(rows), chunk)])
    labels = batch.labels if batch.labels is not None else torch.full((len(rows),), -1, dtype=torch.long)
    return LabelledImages(images=images.float(), labels=labels.long())


def sample_rows(store: LatentStore, n: int, seed: int) -> np.ndarray:
    """``min(n, count)`` distinct rows of the largest bucket, drawn with ``seed``."""
    count = store.largest_bucket().count
    return np.random.default_rng(seed).permutation(count)[: min(n, count)]


def training_split(store: LatentStore, held: LatentStore | None,
                   config: StoreClassifierConfig) -> tuple[LabelledImages, LabelledImages, str]:
    """``(train, test, accuracy_on)``: the held-out store is the test set when given, else a
    ``validation`` fraction of the training rows is."""
    rows = sample_rows(store, config.train_count, config.seed)
    if held is not None:
        test_rows = sample_rows(held, config.train_count, config.seed)
        return decoded_rows(store, rows), decoded_rows(held, test_rows), f"{len(test_rows)} images of {held.url}"
    k = max(1, round(config.validation * len(rows)))
    if len(rows) - k < 2:
        raise GenflowError(f"store '{store.url}' has {len(rows)} images: too few to train a classifier")
    return (decoded_rows(store, rows[k:]), decoded_rows(store, rows[:k]),
            f"{k} training-split images of {store.url} kept out of training (no held-out split)")


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------


def build(shape: tuple[int, ...], num_classes: int, config: StoreClassifierConfig) -> ConvClassifier:
    """The untrained network for pixel images of ``shape`` ``(C, H, W)`` (seeded by ``config.seed``)."""
    channels, height, width = shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return ConvClassifier(channels=channels, num_classes=num_classes, width=config.width,
                              features=config.features, pools=pools_for(min(height, width)))


@torch.no_grad()
def accuracy(model: ConvClassifier, data: LabelledImages, batch_size: int = 256) -> float:
    """Fraction of ``data.images`` classified as ``data.labels``."""
    model.eval()
    predicted = torch.cat([model(data.images[i:i + batch_size]).argmax(1) for i in range(0, len(data.labels), batch_size)])
    return float((predicted == data.labels).double().mean())


def train(model: ConvClassifier, data: LabelledImages, config: StoreClassifierConfig) -> ConvClassifier:
    """Adam with a cosine learning rate and cross-entropy, on one CPU thread; reproducible."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    n = len(data.labels)
    model.train()
    with one_thread():
        for _ in range(config.steps):
            rows = torch.randint(n, (min(config.batch_size, n),), generator=generator)
            images = augment(data.images[rows], config, generator)
            loss = nn.functional.cross_entropy(model(images), data.labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


# ------------------------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------------------------


def cache_key(store: LatentStore, held: LatentStore | None, config: StoreClassifierConfig) -> str:
    """A hash of the config, the procedure version and the stores' plans (what they hold)."""
    return digest({"version": VERSION, "config": attrs.asdict(config), "store": store.meta.plan,
                   "holdout": held.meta.plan if held is not None else None})[:16]


def load(path: pathlib.Path, store: LatentStore, config: StoreClassifierConfig,
         device: torch.device | None = None) -> StoreClassifier:
    """The classifier at ``path``, whose SHA-256 must match its sidecar."""
    try:
        meta = json.loads(sidecar(path).read_text())
    except (OSError, ValueError) as exc:
        raise GenflowError(f"store classifier sidecar '{sidecar(path)}' is unreadable ({exc}); delete "
                           f"'{path}' to retrain") from None
    checksum = sha256_file(path)
    if checksum != meta.get("sha256"):
        raise GenflowError(f"store classifier '{path}' fails its checksum (sha256 {checksum[:12]}...); delete it "
                           "to retrain")
    model = build(tuple(meta["image_shape"]), int(meta["num_classes"]), config)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    except Exception as exc:  # a foreign file with a matching sidecar: one line, not a traceback
        raise GenflowError(f"'{path}' is not a classifier of store '{store.url}': {str(exc)[:200]}") from None
    model.to(device or torch.device("cpu")).eval()
    return StoreClassifier(model=model, path=path, sha256=checksum, accuracy=float(meta["accuracy"]),
                           accuracy_on=str(meta["accuracy_on"]))


def save(model: ConvClassifier, path: pathlib.Path, meta: dict[str, Any]) -> None:
    """Weights first (through a partial file), then the sidecar with their SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.partial")
    torch.save({"model": model.state_dict()}, partial)
    partial.replace(path)
    sidecar(path).write_text(json.dumps({**meta, "sha256": sha256_file(path)}, indent=2) + "\n")


def load_or_train(store: LatentStore, held: LatentStore | None, config: StoreClassifierConfig,
                  cache_dir: pathlib.Path, *, device: torch.device | None = None,
                  progress: bool = True) -> StoreClassifier:
    """The cached classifier of ``store`` (with its held-out store ``held``), trained first if
    missing (once, under a file lock)."""
    if store.meta.sample_kind != "image" or store.meta.num_classes < 2:
        raise GenflowError(f"store '{store.url}' needs images with 2 or more classes for a classifier")
    path = cache_dir / "classifiers" / f"store-{cache_key(store, held, config)}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.is_file() or not sidecar(path).is_file():
            if progress:
                print(f"genflow: training a classifier of '{store.url}' (once, cached as {path})", file=sys.stderr)
            train_data, test_data, accuracy_on = training_split(store, held, config)
            shape = tuple(train_data.images.shape[1:])
            model = train(build(shape, store.meta.num_classes, config), train_data, config)
            save(model, path, {"config": attrs.asdict(config), "version": VERSION, "store": store.url,
                               "image_shape": list(shape), "num_classes": store.meta.num_classes,
                               "accuracy": accuracy(model, test_data), "accuracy_on": accuracy_on,
                               "train_images": len(train_data.labels)})
    return load(path, store, config, device)
