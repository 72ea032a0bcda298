"""End-to-end: a folder of grey labelled images, from ``prepare --holdout`` to ``eval --compare``
with the store's own classifier; ``--data`` keeps an image preset's backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomllib
from PIL import Image

from genflow.cli import main

CLASSIFIER = "classifier={steps=100}"


def _bars(root, *, per_class=16, classes=3):
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / f"bar{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (8, 8)).astype(np.uint8)
            pixels[2 * label + 1] = 230
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def bars_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bars")
    out = tmp / "bars.zarr"
    assert main(["prepare", "--dataset", "imagefolder", "--root", str(_bars(tmp / "images")), "--resolution", "8",
                 "--multiple", "8", "--holdout", "0.25", "--out", str(out), "--no-progress"]) == 0
    return out


def test_eval_compare_on_a_grey_labelled_folder(tmp_path, capsys, monkeypatch, bars_store):
    monkeypatch.setenv("GENFLOW_CACHE", str(tmp_path / "cache"))
    runs = {}
    for objective in ("tim", "fm"):
        runs[objective] = tmp_path / objective
        assert main(["train", "--config", "debug-image", "--data", str(bars_store), "--objective", objective,
                     "--run-dir", str(runs[objective]), "--no-progress", "train.steps=2", "train.batch_size=8"]) == 0
    config = tomllib.loads((runs["tim"] / "config.toml").read_text())
    assert config["backbone"]["name"] == "tim-dit" and config["backbone"]["preset"] == "debug"  # kept
    capsys.readouterr()
    out = tmp_path / "eval"
    code = main(["eval", str(runs["tim"]), "--compare", str(runs["fm"]), "--steps", "1,2", "--num", "24",
                 "--out", str(out), "--no-progress", "--metric-option", f"fd_store.{CLASSIFIER}",
                 "--metric-option", f"class_accuracy_store.{CLASSIFIER}"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads((out / "eval.json").read_text())
    assert list(doc["metrics"]) == ["fd_store", "class_accuracy_store", "sw_pixels"]
    assert {(r["run"], r["metric"], r["steps"]) for r in doc["rows"]} == {
        (run, m, k) for run in ("tim", "fm") for m in doc["metrics"] for k in (1, 2)}
    assert all(r["value"] is not None and r["value"] >= 0 for r in doc["rows"])
    provenance = doc["runs"][0]["metric_provenance"]["fd_store"]
    assert provenance["reference"].endswith("bars-holdout.zarr") and 0 <= provenance["held_out_accuracy"] <= 1
    assert "classifier of fd_store, class_accuracy_store" in stdout and "held-out accuracy" in stdout
    assert (out / "eval_fd_store.png").is_file() and (out / "tim" / "samples_2steps.png").is_file()


def test_data_keeps_an_image_presets_backbone_and_says_when_it_cannot(tmp_path, capsys, bars_store):
    assert main(["train", "--dry-run", "--config", "shapes-science", "--data", str(bars_store)]) == 0
    out, err = capsys.readouterr()
    config = tomllib.loads(out)
    assert config["backbone"]["name"] == "unet" and config["backbone"]["channels"] == [32, 64, 128]
    assert config["data"]["url"] == str(bars_store) and "note" not in err
    assert main(["train", "--dry-run", "--data", str(bars_store)]) == 0  # the demo preset
    config = tomllib.loads(capsys.readouterr().out)
    assert config["backbone"]["name"] == "unet" and config["train"]["max_minutes"] == 0
    assert main(["train", "--dry-run", "--data", str(bars_store), "train.max_minutes=3"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["train"]["max_minutes"] == 3
    assert main(["train", "--dry-run", "--config", "shapes-science", "--data", "toy2d"]) == 0
    out, err = capsys.readouterr()
    assert tomllib.loads(out)["backbone"]["name"] == "mlp"
    assert "the dataset's default backbone replaces it" in err and err.count("\n") == 1
    assert main(["train", "--dry-run", "--config", "shapes-science", "--data", str(bars_store),
                 "--backbone", "tim-dit"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["backbone"]["name"] == "tim-dit"
