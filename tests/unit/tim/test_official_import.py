"""Import of the official TiM weights: the key / shape manifest, the strict mapping, the run folder,
and the imported ``tim-dit`` computing the official network's function in float64."""

from __future__ import annotations

import json
import pathlib
import struct

import attrs
import numpy as np
import pytest
import torch
from genflow_tim import official
from genflow_tim.dit import DiT, DiTConfig
from genflow_tim.official import (
    OFFICIAL_MODELS,
    OfficialModel,
    backbone_options,
    check_layout,
    convert_c2i,
    official_c2i_manifest,
    read_safetensors,
)

from genflow.cli import main
from genflow.errors import GenflowError
from genflow.interfaces import Condition, DataSpec
from genflow.plugins import PluginManager
from genflow.sampling.runs import load_run

from .official_reference import official_forward

TINY = OfficialModel(name="tiny", kind="c2i", hidden=64, depth=3, heads=4, patch=2, channels=3, latent=8,
                     lora_rank=16, encoder_depth=2, z_dim=12, projector_dim=24, num_classes=10,
                     autoencoder="identity", pretrained="")


def random_official_state(model: OfficialModel, seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Random tensors in the official layout (norm weights around 1, the rest N(0, 0.15^2))."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_c2i_manifest(model).items():
        value = 0.15 * torch.randn(shape, generator=gen, dtype=torch.float64)
        if "_norm.weight" in key:
            value = 1 + value
        state[key] = value.to(dtype)
    return state


def tiny_dit(model: OfficialModel = TINY, **layout) -> DiT:
    options = {k: v for k, v in backbone_options(model).items() if k != "name"} | layout
    spec = DataSpec(shape=(model.channels, model.latent, model.latent), num_classes=model.num_classes)
    return DiT(DiTConfig(**options), spec=spec)


def _inputs(model: OfficialModel, n: int = 5, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model.channels, model.latent, model.latent, generator=gen, dtype=torch.float64)
    t = torch.rand(n, generator=gen, dtype=torch.float64)
    r = t * torch.rand(n, generator=gen, dtype=torch.float64)
    y = torch.randint(0, model.num_classes + 1, (n,), generator=gen)  # the null class included
    return x, t, r, y


# ---------------------------------------------------------------- the manifest


def _count(manifest) -> int:
    return sum(int(np.prod(s)) for s in manifest.values())


def test_manifest_sizes_are_the_released_models():
    # the official README: TiM-C2I-256 and -512 have 664M parameters (the trainer's count without
    # the REPA projector); genflow's B/4 and XL/2 counts match (plugins/genflow_tim/dit.py)
    for preset, millions in (("imagenet256-xl2", 664.1), ("imagenet512-xl1", 664.1), ("imagenet256-b4", 128.8)):
        manifest = official_c2i_manifest(OFFICIAL_MODELS[preset])
        without = _count({k: s for k, s in manifest.items() if not k.startswith("projector.")})
        assert round(without / 1e6, 1) == pytest.approx(millions, abs=0.15), preset
    xl2 = official_c2i_manifest(OFFICIAL_MODELS["imagenet256-xl2"])
    assert xl2["blocks.27.adaLN_modulation.fc1_g.weight"] == (384, 1152)
    assert xl2["blocks.0.mlp.fc1_x.weight"] == (3072, 1152)
    assert xl2["y_embedder.embedding_table.weight"] == (1001, 1152)
    assert xl2["projector.4.weight"] == (768, 2048)
    assert xl2["x_embedder.proj.weight"] == (1152, 4, 2, 2)
    assert official_c2i_manifest(OFFICIAL_MODELS["imagenet512-xl1"])["final_layer.linear.weight"] == (32, 1152)
    assert "blocks.28.attn.qkv.weight" not in xl2


def test_the_genflow_model_has_one_tensor_per_official_tensor_bar_the_stacked_swiglus():
    state = convert_c2i(random_official_state(TINY), TINY)
    model = tiny_dit()
    assert set(state) == set(model.state_dict())
    assert all(state[k].shape == v.shape for k, v in model.state_dict().items())
    n_official = _count(official_c2i_manifest(TINY))
    assert sum(p.numel() for p in model.parameters()) == n_official


def test_an_unknown_layout_is_one_clear_error():
    manifest = official_c2i_manifest(TINY)
    state = random_official_state(TINY)
    extra = {**state, "blocks.0.attn.extra.weight": torch.zeros(1)}
    with pytest.raises(GenflowError, match=r"1 unknown \(e.g. 'blocks.0.attn.extra.weight'\)"):
        check_layout(extra, manifest, "f")
    missing = {k: v for k, v in state.items() if k != "projector.4.bias"}
    with pytest.raises(GenflowError, match=r"1 missing \(e.g. 'projector.4.bias'\)"):
        check_layout(missing, manifest, "f")
    wrong = {**state, "blocks.1.mlp.fc2.bias": torch.zeros(7)}
    with pytest.raises(GenflowError, match=r"'blocks.1.mlp.fc2.bias' has shape \(7,\).*\(64,\)"):
        check_layout(wrong, manifest, "f")


# ---------------------------------------------------------------- the function


def test_imported_dit_is_the_official_forward_in_float64():
    state = random_official_state(TINY)
    model = tiny_dit().double()
    model.load_state_dict(convert_c2i(state, TINY), strict=True)
    x, t, r, y = _inputs(TINY)
    expected, expected_z = official_forward(state, x, t, r, y, heads=TINY.heads, patch=TINY.patch,
                                            encoder_depth=TINY.encoder_depth)
    with torch.no_grad():
        got, z = model.forward_features(x, t, r, Condition(labels=y))
        plain = model(x, t, r, Condition(labels=y))
    assert expected.abs().max() > 0.1  # a non-trivial function
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z, expected_z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(plain, got, rtol=0, atol=0)


@pytest.mark.parametrize("layout", [{"qk_norm": "rms"}, {"rope_pairs": "half"}, {"rope_first_axis": "row"}])
def test_each_layout_option_is_needed(layout):
    state = random_official_state(TINY)
    model = tiny_dit(**layout).double()
    converted = convert_c2i(state, TINY)
    if layout.get("qk_norm") == "rms":  # RMSNorm has no bias
        converted = {k: v for k, v in converted.items() if not k.endswith("_norm.bias")}
    model.load_state_dict(converted, strict=True)
    x, t, r, y = _inputs(TINY)
    expected, _ = official_forward(state, x, t, r, y, heads=TINY.heads, patch=TINY.patch,
                                   encoder_depth=TINY.encoder_depth)
    with torch.no_grad():
        got = model(x, t, r, Condition(labels=y))
    assert (got - expected).abs().max() > 1e-4


# ---------------------------------------------------------------- files and the CLI


def write_safetensors(path: pathlib.Path, state: dict[str, torch.Tensor]) -> None:
    """The safetensors layout, written by hand: header size, JSON header, raw bytes."""
    names = {torch.float32: "F32", torch.float64: "F64", torch.bfloat16: "BF16", torch.float16: "F16"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for key, value in state.items():
        raw = value.contiguous().view(torch.uint8).numpy().tobytes() if value.numel() else b""
        header[key] = {"dtype": names[value.dtype], "shape": list(value.shape),
                       "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_safetensors_reader_round_trip(tmp_path):
    state = {"a": torch.randn(3, 4), "b": torch.randn(5, dtype=torch.float64),
             "c": torch.randn(2, 2).to(torch.bfloat16)}
    write_safetensors(tmp_path / "w.safetensors", state)
    got = read_safetensors(tmp_path / "w.safetensors")
    assert set(got) == set(state)
    for key, value in state.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value)
    (tmp_path / "bad.safetensors").write_bytes(b"\x05")
    with pytest.raises(GenflowError, match="not a readable safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors")


@pytest.fixture
def tiny_preset(monkeypatch):
    """``debug-image`` stands for a reference preset, with the tiny official model."""
    monkeypatch.setitem(OFFICIAL_MODELS, "debug-image", TINY)
    return "debug-image"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_writes_a_run_that_samples_and_is_the_official_function(capsys, tmp_path, tiny_preset):
    state = random_official_state(TINY, dtype=torch.float32)
    write_safetensors(tmp_path / "tim.safetensors", state)
    run = tmp_path / "run"
    code, out, err = _run(capsys, "import", "tim-official", str(tmp_path / "tim.safetensors"),
                          "--preset", tiny_preset, "--out", str(run))
    assert code == 0, err
    assert (run / "config.toml").is_file() and (run / "model.pt").is_file()
    loaded = load_run(run, PluginManager())
    backbone = loaded.backbone.double()
    x, t, r, y = _inputs(TINY)
    expected, _ = official_forward({k: v.double() for k, v in state.items()}, x, t, r, y, heads=TINY.heads,
                                   patch=TINY.patch, encoder_depth=TINY.encoder_depth)
    with torch.no_grad():
        got = backbone(x, t, r, Condition(labels=y))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    code, out, err = _run(capsys, "sample", str(run), "--steps", "1,2", "--num", "4", "--class", "3")
    assert code == 0, err
    samples = np.load(run / "samples" / "samples_2steps.npy")
    assert samples.shape == (4, 3, 8, 8) and np.isfinite(samples).all()


def test_import_of_a_torch_state_dict(capsys, tmp_path, tiny_preset):
    torch.save(random_official_state(TINY, dtype=torch.float32), tmp_path / "tim.bin")
    code, _, err = _run(capsys, "import", "tim-official", str(tmp_path / "tim.bin"), "--preset", tiny_preset,
                        "--out", str(tmp_path / "run"))
    assert code == 0, err


@pytest.mark.parametrize(("change", "message"), [
    ("drop", "1 missing"),
    ("shape", "has shape"),
    ("preset", "no official TiM model maps onto it; allowed: imagenet256-b4"),
    ("t2i", "needs --null-caption FILE"),
    ("out", "exists and is not empty"),
    ("source", "unknown importer 'nope'"),
])
def test_import_refuses_bad_input_in_one_line_before_writing(capsys, tmp_path, tiny_preset, change, message):
    state = random_official_state(TINY, dtype=torch.float32)
    if change == "drop":
        state.pop("blocks.2.attn.qkv_d.weight")
    if change == "shape":
        state["final_layer.linear.bias"] = torch.zeros(5)
    write_safetensors(tmp_path / "tim.safetensors", state)
    out = tmp_path / "run"
    if change == "out":
        out.mkdir()
        (out / "mine.txt").write_text("keep")
    preset = {"preset": "demo", "t2i": "t2i-xl1"}.get(change, tiny_preset)
    source = "nope" if change == "source" else "tim-official"
    code, _, err = _run(capsys, "import", source, str(tmp_path / "tim.safetensors"), "--preset", preset,
                        "--out", str(out))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (out / "model.pt").exists() and not (out / "config.toml").exists()
    if change == "out":
        assert (out / "mine.txt").read_text() == "keep"


def test_official_models_import_into_their_presets():
    """Every c2i entry's backbone settings build a tim-dit whose tensors are the manifest's."""
    for preset, model in OFFICIAL_MODELS.items():
        if model.kind != "c2i":
            continue
        small = attrs.evolve(model, depth=1, encoder_depth=1)  # the sizes per block, quickly
        with torch.device("meta"):
            dit = tiny_dit(small)
        converted_shapes = {k: v.shape for k, v in dit.state_dict().items()}
        manifest = official_c2i_manifest(small)
        assert sum(int(np.prod(s)) for s in converted_shapes.values()) == _count(manifest), preset
    assert official.official_model("imagenet256-xl2").patch == 2


def test_an_imported_run_fine_tunes_from_the_imported_weights(capsys, tmp_path, monkeypatch):
    from tests.unit.data.helpers import write_shapes

    store = str(tmp_path / "shapes.zarr")
    write_shapes(store, resolution=16, count=40)  # (3, 16, 16), 16 classes
    model = attrs.evolve(TINY, latent=16, num_classes=16)
    monkeypatch.setitem(OFFICIAL_MODELS, "debug-image", model)
    write_safetensors(tmp_path / "tim.safetensors", random_official_state(model, dtype=torch.float32))
    run = tmp_path / "run"
    code, _, err = _run(capsys, "import", "tim-official", str(tmp_path / "tim.safetensors"), "--preset",
                        "debug-image", "--out", str(run))
    assert code == 0, err
    imported = torch.load(run / "model.pt", weights_only=True)["model"]
    # one AdamW step moves each weight by at most about lr (its update is normalised), so the tuned
    # weights (and their EMA) are the imported ones to within lr: a fresh initialisation is far off
    code, _, err = _run(capsys, "train", "--resume", "--run-dir", str(run), "--no-progress", f"data.url='{store}'",
                        "train.steps=1", "train.lr=1e-6", "train.batch_size=8", "train.checkpoint_every=0",
                        "sample.steps=[1]", "sample.num=2")
    assert code == 0, err
    tuned = torch.load(run / "model.pt", weights_only=True)["model"]
    assert set(tuned) == set(imported)
    assert max(float((tuned[k] - imported[k]).abs().max()) for k in imported) <= 2e-6


def test_the_imported_run_samples_with_the_official_settings(tiny_preset):
    raw = official.run_config_raw(tiny_preset, OFFICIAL_MODELS["imagenet256-xl2"])
    assert raw["sampler"] == {"name": "transition", "guidance_interval": [0.0, 0.6], "stochasticity": 0.2}
    assert raw["sample"]["guidance"] == 2.5
    raw = official.run_config_raw(tiny_preset, OFFICIAL_MODELS["imagenet512-xl1"])
    assert raw["sampler"]["guidance_interval"] == [0.0, 0.7] and raw["sample"]["guidance"] == 3.0
    assert raw["data"]["pretrained"] == "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"


def test_t2i_manifest_is_the_released_865m_model():
    from genflow_tim.official import official_t2i_manifest

    manifest = official_t2i_manifest(OFFICIAL_MODELS["t2i-xl1"])
    without = _count({k: s for k, s in manifest.items() if not k.startswith("projector.")})
    assert round(without / 1e6) == 865  # the official README: TiM-T2I, 865M parameters
    assert manifest["blocks.0.adaLN_modulation.fc2.weight"] == (9 * 1152, 384)
    assert manifest["blocks.5.cross_attn.kv.weight"] == (2304, 1152)
    assert manifest["y_embedder.mlp.fc1_g.weight"] == (4608, 1152)
    assert manifest["x_embedder.proj.weight"] == (1152, 32, 1, 1)
    assert not any(k.startswith("y_embedder.embedding_table") for k in manifest)
