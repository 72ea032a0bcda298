"""``genflow prepare``'s arguments and ``run``; the ``shapes`` and ``store`` datasets."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from genflow.data import prepare
from genflow.data.dataset import ShapesDatasetConfig, StoreConfig, build_shapes, build_store
from genflow.data.store import LatentStore
from genflow.errors import GenflowError


def _run(manager, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    return prepare.run(parser.parse_args([*argv, "--no-progress"]), manager)


def test_prepare_shapes_then_read_as_store(manager, tmp_path):
    url = f"zip::{tmp_path / 'm.zip'}"
    argv = ["--dataset", "shapes", "--resolution", "16", "--count", "40", "--option", "mode=multi", "--out", url]
    assert _run(manager, *argv) == 0
    dataset = build_store(StoreConfig(url=url))
    assert dataset.spec.shape == (3, 16, 16) and dataset.spec.num_classes == 0 and dataset.spec.text
    assert dataset.condition == "text"
    raw = dataset.reference_raw(5, seed=0)
    assert len(raw.captions) == 5 and raw.labels is None
    batch = next(iter(dataset.loader(batch_size=4, rank=0, world_size=1, seed=0)))
    assert batch.cond.text is None  # no text encoder wired: captions via iter_raw / text_fn
    dataset.attach_tokenizer(lambda captions: (
        torch.zeros(len(captions), 3, dtype=torch.long),
        torch.ones(len(captions), 3, dtype=torch.bool),
    ))
    batch = next(iter(dataset.loader(batch_size=4, rank=0, world_size=1, seed=0)))
    assert batch.cond.text.shape == (4, 3)


def test_prepare_toy2d_points(manager, tmp_path):
    url = str(tmp_path / "toy.zarr")
    assert _run(manager, "--dataset", "toy2d", "--count", "100", "--option", "kind=rings", "--out", url) == 0
    dataset = build_store(StoreConfig(url=url))
    assert dataset.spec.shape == (2,) and not dataset.spec.is_image
    batch = next(iter(dataset.loader(batch_size=10, rank=0, world_size=1, seed=0)))
    assert batch.x.shape == (10, 2) and batch.cond.labels is None
    torch.testing.assert_close(dataset.decode(batch.x), batch.x)
    with pytest.raises(GenflowError, match="has no labels"):
        build_store(StoreConfig(url=url, condition="labels"))


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--dataset", "toy2d", "--resolution", "8"], "--resolution does not apply to dataset 'toy2d'"),
        (["--dataset", "shapes", "--option", "colour=red"], "unknown option 'colour' for dataset 'shapes'"),
        (["--dataset", "shapes", "--autoencoder", "nope"], "unknown autoencoder 'nope'"),
        (["--dataset", "imagefolder"], "needs --root"),
        (["--dataset", "shapes", "--ae-option", "x=1"], "unknown option 'x' for autoencoder 'identity'"),
    ],
)
def test_prepare_argument_errors(manager, tmp_path, argv, match):
    with pytest.raises(GenflowError, match=match):
        _run(manager, *argv, "--out", str(tmp_path / "x.zarr"))


def test_parse_options_reads_toml_literals_and_bare_words():
    assert prepare.parse_options(["a=1", "b=[1.0, 2.0]", "c=word", 'd="q"', "e=false"]) == {
        "a": 1,
        "b": [1.0, 2.0],
        "c": "word",
        "d": "q",
        "e": False,
    }


def test_shapes_dataset_prepares_once_into_the_cache(tmp_path, monkeypatch):
    config = ShapesDatasetConfig(resolution=16, count=64)
    dataset = build_shapes(config, cache_dir=tmp_path)
    assert dataset.spec.shape == (3, 16, 16) and dataset.spec.num_classes == 16 and not dataset.spec.text
    assert dataset.classes[5] == "green square"
    reference = dataset.reference(8, seed=1)
    assert reference.x.shape == (8, 3, 16, 16) and reference.cond.labels.shape == (8,)
    torch.testing.assert_close(dataset.decode(reference.x), reference.x)  # identity: already [-1, 1]
    monkeypatch.setattr("genflow.data.dataset.prepare_store", lambda *a, **k: pytest.fail("prepared twice"))
    again = build_shapes(ShapesDatasetConfig(resolution=16, count=64, num_workers=1), cache_dir=tmp_path)
    torch.testing.assert_close(again.reference(8, seed=1).x, reference.x)
    (store,) = tmp_path.glob("shapes-*.zarr")
    assert LatentStore(str(store)).count == 64


def test_store_dataset_options(shapes_store):
    url, _ = shapes_store
    with pytest.raises(GenflowError, match="needs a url"):
        build_store(StoreConfig())
    text = build_store(StoreConfig(url=url, condition="text"))
    assert text.spec.text and text.spec.num_classes == 0
    stats = build_store(StoreConfig(url=url, normalize="stats"))
    x = stats.reference(150, seed=0).x
    assert np.allclose(x.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=0.2)
    plain = build_store(StoreConfig(url=url, condition="none"))
    assert plain.spec.num_classes == 0 and plain.reference(2, seed=0).cond.labels is None


def test_a_tokenizer_attaches_to_captioned_data_only():
    from genflow.data.toy2d import Toy2D, Toy2DConfig

    points = Toy2D(Toy2DConfig())
    with pytest.raises(GenflowError, match="Toy2D is not caption-conditioned"):
        points.attach_tokenizer(lambda captions: (torch.zeros(1), torch.ones(1)))
    with pytest.raises(GenflowError, match="no tokenizer attached"):
        points.tokenizer()
