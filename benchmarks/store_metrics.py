"""How ``fd_store`` and ``sw_pixels`` respond to known corruptions of real images of a store
prepared with ``genflow prepare --holdout`` (docs/eval.md, "Any image store").

    python benchmarks/store_metrics.py digits8.zarr

Compares as many training images as the held-out store has (drawn with seed 0) against every
held-out image: clean, with Gaussian pixel noise (std 0.05-0.4) and with Gaussian blur (0.5, 1
pixel). Trains (or loads) the store's cached classifier with the default settings.
"""

from __future__ import annotations

import argparse

import _paths  # noqa: F401  (genflow importable from a bare checkout)
import numpy as np
import torch

from genflow.components.build import cache_dir
from genflow.data.splits import holdout_store
from genflow.data.store import LatentStore
from genflow.eval.corrupt import add_noise, blur
from genflow.eval.distances import sliced_wasserstein
from genflow.eval.frechet import frechet_from_features
from genflow.eval.store_classifier import StoreClassifierConfig, decoded_rows, load_or_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a store written by genflow prepare --holdout F")
    args = parser.parse_args()
    store = LatentStore(args.store)
    held = holdout_store(store)
    if held is None:
        raise SystemExit(f"store_metrics: '{args.store}' has no held-out split (genflow prepare --holdout F)")
    model = load_or_train(store, held, StoreClassifierConfig(), cache_dir())
    print(f"classifier held-out accuracy {model.accuracy:.4f} on {model.accuracy_on}")
    real = decoded_rows(held, np.arange(held.count)).images
    train = decoded_rows(store, np.random.default_rng(0).permutation(store.count)[: held.count]).images
    generator = torch.Generator().manual_seed(0)
    cases = {"clean training images": train}
    cases.update({f"noise std {s}": add_noise(train, s, generator) for s in (0.05, 0.1, 0.2, 0.4)})
    cases.update({f"blur {s} px": blur(train, s) for s in (0.5, 1.0)})
    reference = model.features(real)
    print(f"{'vs ' + str(held.count) + ' held-out images':<28} {'fd_store':>9} {'sw_pixels':>9}")
    for name, images in cases.items():
        fd = frechet_from_features(model.features(images), reference)
        print(f"{name:<28} {fd:>9.2f} {sliced_wasserstein(images, real):>9.4f}")


if __name__ == "__main__":
    main()
