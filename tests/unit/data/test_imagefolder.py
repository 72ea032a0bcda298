"""Image folders: native aspect-ratio buckets, class folders, caption files, bad folders."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageOps

from genflow.data.autoencoders import Identity
from genflow.data.imagefolder import ImageFolderConfig, ImageFolderSource
from genflow.data.pipeline import prepare_store
from genflow.data.reader import StoreLoader
from genflow.data.store import LatentStore
from genflow.errors import GenflowError

from .helpers import take

SIZES = {"wide": (48, 24), "square": (30, 30), "tall": (20, 40)}  # (width, height)


def _folder(root, *, classes=True, captions=False):
    rng = np.random.default_rng(0)
    for i in range(12):
        kind = list(SIZES)[i % 3]
        folder = root / (f"class{i % 2}" if classes else "")
        folder.mkdir(parents=True, exist_ok=True)
        width, height = SIZES[kind]
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{kind}{i}.png")
        if captions:
            (folder / f"{kind}{i}.txt").write_text(f"picture {i}\n")
    return root


def test_buckets_keep_aspect_ratios_and_pixels(tmp_path):
    root = _folder(tmp_path / "images", captions=True)
    source = ImageFolderSource(ImageFolderConfig(root=str(root), resolution=16, multiple=8))
    assert source.classes == ["class0", "class1"] and source.has_captions
    url = str(tmp_path / "if.zarr")
    prepare_store(source, Identity(), url, progress=False)
    store = LatentStore(url)
    assert {k: b.count for k, b in store.buckets.items()} == {"8x24": 4, "16x16": 4, "24x8": 4}
    for bucket in store.buckets.values():
        chunk = bucket.read(0)
        for latents, index, label, caption in zip(
            chunk.latents, chunk.source_index, chunk.labels, chunk.captions, strict=True
        ):
            path = source._files[index]
            height, width = bucket.pixel_size
            with Image.open(path) as image:
                expected = np.asarray(ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.BICUBIC))
            np.testing.assert_array_equal(latents.transpose(1, 2, 0), expected)
            number = re.sub(r"\D", "", path.stem)
            assert label == int(path.parent.name[-1]) and caption == f"picture {number}"
    loader = StoreLoader(store, batch_size=2, seed=0)
    for batch in take(loader, loader.batches_per_epoch):
        assert batch.x.shape[2:] == store.buckets[batch.bucket].pixel_size


def test_unlabelled_folder_without_captions(tmp_path):
    source = ImageFolderSource(
        ImageFolderConfig(root=str(_folder(tmp_path / "flat", classes=False)), resolution=16, multiple=8)
    )
    assert source.classes == [] and not source.has_labels and not source.has_captions


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenflowError, match="has no images; allowed extensions"):
        ImageFolderSource(ImageFolderConfig(root=str(tmp_path / "empty")))


def test_unreadable_image(tmp_path):
    root = _folder(tmp_path / "broken")
    (root / "class0" / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(GenflowError, match=r"cannot read image '.*bad\.png'") as err:
        ImageFolderSource(ImageFolderConfig(root=str(root), resolution=16, multiple=8))
    assert "\n" not in str(err.value)


def test_truncated_image_fails_prepare_and_leaves_an_incomplete_store(tmp_path):
    root = _folder(tmp_path / "trunc")
    path = root / "class0" / "wide0.png"
    path.write_bytes(path.read_bytes()[:200])  # header intact, pixels cut
    source = ImageFolderSource(ImageFolderConfig(root=str(root), resolution=16, multiple=8))
    url = str(tmp_path / "t.zarr")
    with pytest.raises(GenflowError, match="wide0.png"):
        prepare_store(source, Identity(), url, progress=False)
    with pytest.raises(GenflowError, match="incomplete"):
        LatentStore(url)


def test_some_captions_missing(tmp_path):
    root = _folder(tmp_path / "cap", captions=True)
    next(root.rglob("*.txt")).unlink()
    with pytest.raises(GenflowError, match="caption file .* is missing"):
        ImageFolderSource(ImageFolderConfig(root=str(root)))
