"""Grey image folders stay one channel; ``prepare --holdout`` writes a disjoint held-out store."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from genflow.cli import main
from genflow.data.autoencoders import Identity, IdentityConfig
from genflow.data.imagefolder import ImageFolderConfig, ImageFolderSource, held_out_rows
from genflow.data.pipeline import prepare_store
from genflow.data.splits import holdout_fraction, holdout_store, holdout_url
from genflow.data.store import LatentStore
from genflow.errors import GenflowError


def _grey_folder(root, *, per_class=(5, 7, 4), size=(12, 10), mode="L"):
    rng = np.random.default_rng(0)
    for label, count in enumerate(per_class):
        folder = root / f"c{label}"
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size[::-1], dtype=np.uint8)
            Image.fromarray(pixels, mode="L").convert(mode).save(folder / f"{i}.png")
    return root


def _rows(url):
    """``{source_index: (latents, label)}`` of every row of a store."""
    out = {}
    for bucket in LatentStore(url).buckets.values():
        for c in range(bucket.num_chunks):
            chunk = bucket.read(c)
            for latents, index, label in zip(chunk.latents, chunk.source_index, chunk.labels, strict=True):
                out[int(index)] = (latents, int(label))
    return out


def test_a_grey_folder_is_stored_as_one_channel_exactly(tmp_path):
    root = _grey_folder(tmp_path / "grey")
    source = ImageFolderSource(ImageFolderConfig(root=str(root), resolution=8, multiple=8))
    assert source.channels == 1
    url = str(tmp_path / "g.zarr")
    prepare_store(source, Identity(), url, progress=False)
    store = LatentStore(url)
    assert store.meta.channels == 1 and store.meta.autoencoder.config == {"channels": 1}
    assert store.meta.autoencoder.shift == [127.5] and store.largest_bucket().sample_shape == (1, 8, 8)
    for index, (latents, _) in _rows(url).items():
        with Image.open(source._files[index]) as image:
            expected = np.asarray(ImageOps.fit(image.convert("L"), (8, 8), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(latents[0], expected)


def test_channels_option_and_grey_into_an_rgb_autoencoder_repeat_the_grey(tmp_path):
    root = _grey_folder(tmp_path / "grey")
    grey, rgb = str(tmp_path / "g.zarr"), str(tmp_path / "rgb.zarr")
    prepare_store(ImageFolderSource(ImageFolderConfig(root=str(root), resolution=8, multiple=8)), Identity(), grey,
                  progress=False)
    prepare_store(ImageFolderSource(ImageFolderConfig(root=str(root), resolution=8, multiple=8)),
                  Identity(IdentityConfig(channels=3)), rgb, progress=False)
    one, three = _rows(grey), _rows(rgb)
    assert LatentStore(rgb).meta.channels == 3
    for index, (latents, _) in three.items():
        assert latents.shape == (3, 8, 8)
        for c in range(3):
            np.testing.assert_array_equal(latents[c], one[index][0][0])
    forced = ImageFolderSource(ImageFolderConfig(root=str(root), resolution=8, multiple=8, channels=3))
    assert forced.channels == 3


def test_a_colour_folder_stays_rgb_and_bad_channels_are_one_line(tmp_path):
    root = _grey_folder(tmp_path / "rgb", mode="RGB")
    assert ImageFolderSource(ImageFolderConfig(root=str(root), resolution=8, multiple=8)).channels == 3
    with pytest.raises(GenflowError, match="channels = 2: expected 0"):
        ImageFolderSource(ImageFolderConfig(root=str(root), resolution=8, multiple=8, channels=2))
    with pytest.raises(GenflowError, match="channels = 4: expected 0"):
        Identity(IdentityConfig(channels=4))
    source = ImageFolderSource(ImageFolderConfig(root=str(root), resolution=8, multiple=8))
    with pytest.raises(GenflowError, match="takes 1-channel images but dataset 'imagefolder' gives 3"):
        prepare_store(source, Identity(IdentityConfig(channels=1)), str(tmp_path / "x.zarr"), progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_held_out_rows_take_a_fraction_of_every_class():
    labels = [0] * 10 + [1] * 3 + [2] * 1
    rows = held_out_rows(labels, 0.2, seed=0)
    chosen = np.asarray(labels)[rows]
    assert (chosen == 0).sum() == 2 and (chosen == 1).sum() == 1 and (chosen == 2).sum() == 0
    assert np.array_equal(rows, held_out_rows(labels, 0.2, seed=0))
    assert not np.array_equal(held_out_rows(labels * 3, 0.5, seed=0), held_out_rows(labels * 3, 0.5, seed=1))
    assert len(held_out_rows(labels, 0.0, seed=0)) == 0


@pytest.mark.parametrize(("url", "expected"), [
    ("d.zarr", "d-holdout.zarr"), ("a/b/d.zarr/", "a/b/d-holdout.zarr"), ("x.zip", "x-holdout.zip"),
    ("zip::s3://bucket/x.zip", "zip::s3://bucket/x-holdout.zip"), ("memory://store", "memory://store-holdout"),
])
def test_holdout_url_is_a_sibling(url, expected):
    assert holdout_url(url) == expected


def test_prepare_holdout_writes_two_disjoint_stores(tmp_path, capsys):
    root = _grey_folder(tmp_path / "grey")
    out = tmp_path / "d.zarr"
    assert main(["prepare", "--dataset", "imagefolder", "--root", str(root), "--resolution", "8", "--multiple", "8",
                 "--holdout", "0.25", "--out", str(out), "--no-progress"]) == 0
    train, held = _rows(str(out)), _rows(str(tmp_path / "d-holdout.zarr"))
    assert set(train).isdisjoint(held) and set(train) | set(held) == set(range(16))
    assert sorted(label for _, label in held.values()) == [0, 1, 1, 2]  # round(0.25 n) of n = 5, 7, 4
    store = LatentStore(str(out))
    assert holdout_fraction(store) == 0.25
    found = holdout_store(store)
    assert found is not None and found.count == 4
    assert holdout_store(found) is None  # the held-out store has no held-out store of its own


def test_prepare_holdout_checks_both_targets_before_writing(tmp_path, capsys):
    root = _grey_folder(tmp_path / "grey")
    (tmp_path / "d-holdout.zarr").mkdir()
    (tmp_path / "d-holdout.zarr" / "mine.txt").write_text("keep")
    code = main(["prepare", "--dataset", "imagefolder", "--root", str(root), "--resolution", "8", "--multiple", "8",
                 "--holdout", "0.25", "--out", str(tmp_path / "d.zarr"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "d-holdout.zarr' exists and is not a genflow store" in err and err.count("\n") == 1
    assert not (tmp_path / "d.zarr").exists() and (tmp_path / "d-holdout.zarr" / "mine.txt").read_text() == "keep"


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "shapes", "--holdout", "0.1"], "--holdout does not apply to dataset 'shapes'"),
    (["--dataset", "imagefolder", "--holdout", "1.5"], "--holdout 1.5: expected a fraction between 0 and 1"),
    (["--dataset", "imagefolder", "--option", "split=holdout"], "--option split: prepare chooses the split"),
])
def test_bad_holdout_arguments_are_one_line(tmp_path, capsys, args, message):
    root = _grey_folder(tmp_path / "grey")
    code = main(["prepare", *args, "--root", str(root), "--out", str(tmp_path / "x.zarr"), "--no-progress"]
                if "imagefolder" in args else ["prepare", *args, "--out", str(tmp_path / "x.zarr"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.zarr").exists()


def test_a_missing_holdout_store_is_one_line(tmp_path):
    root = _grey_folder(tmp_path / "grey")
    assert main(["prepare", "--dataset", "imagefolder", "--root", str(root), "--resolution", "8", "--multiple", "8",
                 "--holdout", "0.25", "--out", str(tmp_path / "d.zarr"), "--no-progress"]) == 0
    import shutil

    shutil.rmtree(tmp_path / "d-holdout.zarr")
    with pytest.raises(GenflowError, match="was prepared with --holdout, but its held-out split"):
        holdout_store(LatentStore(str(tmp_path / "d.zarr")))
