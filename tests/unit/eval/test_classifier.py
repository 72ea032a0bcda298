"""Done-when 2: the shapes classifier is accurate, and its Frechet distance ranks corruption."""

from __future__ import annotations

import json

import pytest
import torch

from genflow.data.shapes import ShapesConfig
from genflow.errors import GenflowError
from genflow.eval import classifier as clf
from genflow.eval.corrupt import add_noise, blur
from genflow.eval.frechet import frechet_from_features

N = 1000


def test_held_out_accuracy_is_at_least_98_percent(shapes_classifier):
    images, labels = clf.held_out(shapes_classifier.config)
    accuracy = float((shapes_classifier.predict(images) == labels).double().mean())
    assert accuracy >= 0.98
    assert shapes_classifier.accuracy == pytest.approx(accuracy)  # what the sidecar recorded


@pytest.fixture(scope="module")
def real_features(shapes_classifier):
    """Features of two disjoint sets of real shapes (the datasets' generator, seed 0), and set B."""
    config = ShapesConfig(count=2 * N)
    a, _ = clf.render_labelled(config, range(N))
    b, _ = clf.render_labelled(config, range(N, 2 * N))
    return shapes_classifier.features(a), b


def test_frechet_is_near_zero_between_real_sets_and_grows_with_corruption(shapes_classifier, real_features):
    fa, b = real_features
    real = frechet_from_features(fa, shapes_classifier.features(b))
    generator = torch.Generator().manual_seed(0)
    noisy = [frechet_from_features(fa, shapes_classifier.features(add_noise(b, s, generator))) for s in (0.1, 0.2, 0.4)]
    blurred = [frechet_from_features(fa, shapes_classifier.features(blur(b, s))) for s in (0.5, 1.0, 2.0)]
    assert real < 1.0, real
    assert real < noisy[0] < noisy[1] < noisy[2], (real, noisy)
    assert real < blurred[0] < blurred[1] < blurred[2], (real, blurred)
    assert noisy[-1] > 20 * real and blurred[-1] > 20 * real


def test_checksum_is_recorded_and_verified(shapes_classifier, tmp_path):
    meta = json.loads(clf.sidecar(shapes_classifier.path).read_text())
    assert meta["sha256"] == clf.sha256_file(shapes_classifier.path) == shapes_classifier.sha256
    copy = tmp_path / "c.pt"
    data = bytearray(shapes_classifier.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    copy.write_bytes(bytes(data))
    clf.sidecar(copy).write_text(json.dumps(meta))
    with pytest.raises(GenflowError, match="fails its checksum"):
        clf.load(copy)
    with pytest.raises(GenflowError, match="is missing"):
        clf.load(tmp_path / "absent.pt")


TINY = {"train_count": 64, "test_count": 16, "epochs": 1, "width": 4, "features": 8}


def test_training_is_reproducible_and_the_command_writes_weights_and_checksum(tmp_path, capsys):
    config = clf.ClassifierConfig(**TINY)
    first, _ = clf.train(config)
    second, _ = clf.train(config)
    for (name, p), q in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    out = tmp_path / "tiny.pt"
    code = clf.main([*(f"--option={k}={v}" for k, v in TINY.items()), "--out", str(out)])
    assert code == 0
    assert f"sha256: {clf.sha256_file(out)}" in capsys.readouterr().out
    loaded = clf.load(out)
    assert loaded.config == config and loaded.features(torch.zeros(2, 3, 32, 32)).shape == (2, 8)
    for k, v in first.state_dict().items():  # the command trains exactly what train() trains
        torch.testing.assert_close(loaded.model.state_dict()[k], v)


def test_unknown_option_of_the_command_is_one_line(capsys):
    assert clf.main(["--option", "depth=3"]) == 2
    assert "unknown option 'depth'" in capsys.readouterr().err
