"""Import of the official TiM text-to-image weights: the strict mapping onto ``tim-dit`` with the
official caption embedder and gated cross-attention, the null caption, and the imported backbone
computing the official network's function in float64 (``official_reference.official_t2i_forward``)."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch
from genflow_tim.dit import DiT, DiTConfig
from genflow_tim.official import (
    OFFICIAL_MODELS,
    OfficialModel,
    backbone_options,
    check_layout,
    convert_t2i,
    official_t2i_manifest,
)

from genflow.cli import main
from genflow.interfaces import Condition, DataSpec
from genflow.plugins import PluginManager
from genflow.sampling.runs import load_run

from .official_reference import official_t2i_forward
from .test_official_import import write_safetensors

#: The official text-to-image layout at a CPU size (hidden 64, depth 2); the run's text encoder is
#: genflow's ``transformer`` of the same width (the backbone is checked on given encoder states).
TINY = OfficialModel(name="tiny-t2i", kind="t2i", hidden=64, depth=2, heads=4, patch=2, channels=3, latent=8,
                     lora_rank=16, encoder_depth=1, z_dim=12, projector_dim=24, num_classes=0,
                     autoencoder="identity", pretrained="", cap_dim=40, max_length=12, text_encoder="transformer")


def random_state(model: OfficialModel = TINY, seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Random tensors in the official text-to-image layout (norm weights around 1)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_t2i_manifest(model, model.cap_dim).items():
        value = 0.15 * torch.randn(shape, generator=gen, dtype=torch.float64)
        if "norm.weight" in key:
            value = 1 + value
        state[key] = value.to(dtype)
    return state


def null_caption(model: OfficialModel = TINY, seed: int = 5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(model.max_length, model.cap_dim, generator=gen, dtype=torch.float64)


def tiny_dit(model: OfficialModel = TINY) -> DiT:
    options = {k: v for k, v in backbone_options(model).items() if k != "name"}
    spec = DataSpec(shape=(model.channels, model.latent, model.latent), text=True, text_dim=model.cap_dim)
    return DiT(DiTConfig(**options), spec=spec)


def _inputs(model: OfficialModel = TINY, n: int = 4, length: int = 7, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, model.channels, model.latent, model.latent, generator=gen, dtype=torch.float64)
    t = torch.rand(n, generator=gen, dtype=torch.float64)
    r = t * torch.rand(n, generator=gen, dtype=torch.float64)
    text = torch.randn(n, length, model.cap_dim, generator=gen, dtype=torch.float64)
    mask = torch.zeros(n, length, dtype=torch.bool)
    mask[0] = True  # a caption as long as the batch's longest
    mask[1, :3] = True  # a shorter one: its padding states are keys too, as in the official code
    mask[3, :1] = True  # row 2: no real token, the null condition
    return x, t, r, text, mask


def _official_text(text: torch.Tensor, mask: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """What the official sampler feeds: the caption states, or ``null_cap_feat[:, :L]`` for the null rows."""
    empty = ~mask.any(dim=1)
    return torch.where(empty[:, None, None], null[: text.shape[1]], text)


def _reference(state, x, t, r, text, mask, null):
    return official_t2i_forward(state, x, t, r, _official_text(text, mask, null), heads=TINY.heads, patch=TINY.patch)


# ---------------------------------------------------------------- the layout


def test_the_genflow_model_has_one_tensor_per_official_tensor_plus_the_null_caption():
    converted = convert_t2i(random_state(), TINY, null_caption())
    model = tiny_dit()
    assert set(converted) == set(model.state_dict())
    assert all(converted[k].shape == v.shape for k, v in model.state_dict().items())
    manifest = official_t2i_manifest(TINY, TINY.cap_dim)
    n_official = sum(int(np.prod(s)) for s in manifest.values())
    assert sum(p.numel() for p in model.parameters()) == n_official


def test_released_t2i_sizes_build_the_same_number_of_parameters():
    model = attrs.evolve(OFFICIAL_MODELS["t2i-xl1"], depth=1, encoder_depth=1)  # per block, quickly
    with torch.device("meta"):
        dit = tiny_dit(model)
    manifest = official_t2i_manifest(model, model.cap_dim)
    assert sum(p.numel() for p in dit.parameters()) == sum(int(np.prod(s)) for s in manifest.values())
    assert dit.null_caption.shape == (256, 1152)


# ---------------------------------------------------------------- the function


def test_imported_t2i_dit_is_the_official_forward_in_float64():
    state, null = random_state(), null_caption()
    model = tiny_dit().double()
    model.load_state_dict(convert_t2i(state, TINY, null), strict=True)
    x, t, r, text, mask = _inputs()
    expected = _reference(state, x, t, r, text, mask, null)
    with torch.no_grad():
        got = model(x, t, r, Condition(text=text, text_mask=mask))
    assert expected.abs().max() > 0.1  # a non-trivial function
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_the_gated_cross_attention_reads_the_text_and_no_mask():
    state, null = random_state(), null_caption()
    model = tiny_dit().double()
    model.load_state_dict(convert_t2i(state, TINY, null), strict=True)
    x, t, r, text, mask = _inputs()
    with torch.no_grad():
        base = model(x, t, r, Condition(text=text, text_mask=mask))
        changed_padding = text.clone()
        changed_padding[1, 5] += torch.randn(TINY.cap_dim, dtype=torch.float64)  # a padding position of row 1: still a key (official: no mask)
        moved = model(x, t, r, Condition(text=changed_padding, text_mask=mask))
        changed_null_row = text.clone()
        changed_null_row[2] += torch.randn(7, TINY.cap_dim, dtype=torch.float64)  # the null row reads the null caption, not its own states
        same = model(x, t, r, Condition(text=changed_null_row, text_mask=mask))
        no_text = model(x[:1], t[:1], r[:1], Condition())
    assert (moved[1] - base[1]).abs().max() > 1e-6
    torch.testing.assert_close(moved[[0, 2, 3]], base[[0, 2, 3]], rtol=0, atol=0)
    torch.testing.assert_close(same, base, rtol=0, atol=0)
    # without any text a row reads the null caption's first state (the official empty prompt's length)
    expected = official_t2i_forward(state, x[:1], t[:1], r[:1], null[None, :1], heads=TINY.heads, patch=TINY.patch)
    torch.testing.assert_close(no_text, expected, rtol=1e-12, atol=1e-12)


def test_a_caption_longer_than_the_null_caption_is_refused():
    model = tiny_dit().double()
    model.load_state_dict(convert_t2i(random_state(), TINY, null_caption()), strict=True)
    x, t, r, _, _ = _inputs()
    text = torch.randn(4, TINY.max_length + 1, TINY.cap_dim, dtype=torch.float64)
    with pytest.raises(ValueError, match="null_caption_length"):
        model(x, t, r, Condition(text=text, text_mask=torch.ones(text.shape[:2], dtype=torch.bool)))


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def tiny_preset(monkeypatch):
    """``debug-text`` stands for ``t2i-xl1``, with the tiny official text-to-image model."""
    monkeypatch.setitem(OFFICIAL_MODELS, "debug-text", TINY)
    return "debug-text"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _write_inputs(tmp_path, state, null):
    write_safetensors(tmp_path / "tim.safetensors", state)
    torch.save(null, tmp_path / "null.pt")
    return tmp_path / "tim.safetensors", tmp_path / "null.pt"


def test_cli_import_of_t2i_weights_is_the_official_function(capsys, tmp_path, tiny_preset):
    state = random_state(dtype=torch.float32)
    null = null_caption().to(torch.float32)[None]  # as encode_prompt returns it: (1, L, cap_dim)
    weights, null_file = _write_inputs(tmp_path, state, null)
    run = tmp_path / "run"
    code, out, err = _run(capsys, "import", "tim-official", str(weights), "--preset", tiny_preset,
                          "--out", str(run), "--null-caption", str(null_file))
    assert code == 0, err
    config = (run / "config.toml").read_text()
    assert 'cross_attention = "gated"' in config and 'caption_embedder = "norm-swiglu"' in config
    backbone = load_run(run, PluginManager()).backbone.double()
    x, t, r, text, mask = _inputs()
    expected = _reference({k: v.double() for k, v in state.items()}, x, t, r, text, mask, null[0].double())
    with torch.no_grad():
        got = backbone(x, t, r, Condition(text=text, text_mask=mask))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("change", "message"), [
    ("unknown", "1 unknown (e.g. 'blocks.0.cross_attn.extra')"),
    ("drop", "1 missing (e.g. 'blocks.1.cross_attn.k_norm.bias')"),
    ("shape", "tensor 'y_embedder.norm.weight' has shape (7,)"),
    ("c2i", "2 missing (e.g. 'blocks.0.adaLN_modulation.fc2.bias')"),
    ("no-null", "needs --null-caption FILE"),
    ("null-shape", "has shape [3, 40]"),
])
def test_t2i_import_refuses_bad_input_in_one_line_before_writing(capsys, tmp_path, tiny_preset, change, message):
    state, null = random_state(dtype=torch.float32), null_caption().to(torch.float32)
    if change == "unknown":
        state["blocks.0.cross_attn.extra"] = torch.zeros(1)
    if change == "drop":
        state.pop("blocks.1.cross_attn.k_norm.bias")
    if change == "shape":
        state["y_embedder.norm.weight"] = torch.zeros(7)
    if change == "null-shape":
        null = null[:3]
    weights, null_file = _write_inputs(tmp_path, state, null)
    if change == "c2i":  # a class-conditional file offered as the text-to-image model
        from genflow_tim.official import official_c2i_manifest

        c2i = attrs.evolve(TINY, kind="c2i", num_classes=10)
        write_safetensors(weights, {k: torch.zeros(s) for k, s in official_c2i_manifest(c2i).items()})
        message = "not the official layout of this preset's model"
    out = tmp_path / "run"
    argv = ["import", "tim-official", str(weights), "--preset", tiny_preset, "--out", str(out)]
    if change != "no-null":
        argv += ["--null-caption", str(null_file)]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_null_caption_is_refused_for_a_class_conditional_model(capsys, tmp_path, monkeypatch):
    from .test_official_import import TINY as TINY_C2I
    from .test_official_import import random_official_state

    monkeypatch.setitem(OFFICIAL_MODELS, "debug-image", TINY_C2I)
    weights, null_file = _write_inputs(tmp_path, random_official_state(TINY_C2I, dtype=torch.float32),
                                       null_caption())
    code, _, err = _run(capsys, "import", "tim-official", str(weights), "--preset", "debug-image",
                        "--out", str(tmp_path / "run"), "--null-caption", str(null_file))
    assert code == 2 and "--null-caption is for text-to-image models" in err
    assert not (tmp_path / "run").exists()


def test_the_layout_check_names_the_t2i_manifest():
    manifest = official_t2i_manifest(TINY, TINY.cap_dim)
    assert manifest["y_embedder.norm.weight"] == (40,)
    assert manifest["y_embedder.mlp.fc1_g.weight"] == (256, 40)
    assert manifest["blocks.1.adaLN_modulation.fc2.weight"] == (9 * 64, 16)
    check_layout(random_state(), manifest, "f")  # the random state is the layout


def test_the_imported_t2i_run_has_the_official_settings(tiny_preset):
    from genflow_tim import official

    raw = official.run_config_raw(tiny_preset, OFFICIAL_MODELS["t2i-xl1"])
    # official: --cfg-scale 2.5, guided where 0 < t < 1 (never the first step at t = 1), deterministic
    assert raw["sampler"] == {"name": "transition", "guidance_interval": [0.0, 0.999999], "stochasticity": 0.0}
    assert raw["sample"]["guidance"] == 2.5
    assert raw["text_encoder"] == {"name": "gemma", "path": "google/gemma-3-1b-it", "max_length": 256, "dim": 1152}
    assert raw["data"]["text"] is True and raw["data"]["shape"] == [32, 32, 32]
    assert raw["backbone"]["cross_attention"] == "gated" and raw["backbone"]["text_pooled"] is False
    assert raw["backbone"]["null_caption_length"] == 256


@pytest.mark.parametrize(("override", "message"), [
    ("backbone.cross_attention='plain'", "cross_attention"),
    ("backbone.caption_embedder='mlp'", "caption_embedder"),
    ("backbone.null_caption_length=0", "null_caption_length"),
])
def test_bad_text_layout_options_are_one_line(capsys, override, message):
    code, _, err = _run(capsys, "config", "--config", "debug-text", override)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_forward_mode_ad_through_the_gated_text_layout_matches_finite_differences():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    state, null = random_state(), null_caption()
    model = tiny_dit().double()
    model.load_state_dict(convert_t2i(state, TINY, null), strict=True)
    x, t, r, text, mask = _inputs()
    cond = Condition(text=text, text_mask=mask)

    def F_of_t(tt):
        return model(x, tt, r, cond)

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        _, dF_dt = torch.func.jvp(F_of_t, (t,), (torch.ones_like(t),))
        h = 1e-5
        central = (F_of_t(t + h) - F_of_t(t - h)) / (2 * h)
    assert dF_dt.abs().max() > 1e-3
    torch.testing.assert_close(dF_dt, central, rtol=1e-6, atol=1e-6)
