"""The optional ``gemma`` text encoder (``genflow_tim.gemma``) on a tiny randomly initialised Gemma
written in the test (no download), and a text-to-image run imported with it that samples a prompt."""

from __future__ import annotations

import sys

import attrs
import numpy as np
import pytest
import torch
from genflow_tim.gemma import GemmaTextConfig, GemmaTextEncoder, build_gemma
from genflow_tim.gemma import main as gemma_main
from genflow_tim.official import OFFICIAL_MODELS

from genflow.cli import main
from genflow.errors import GenflowError

from .test_official_import import write_safetensors
from .test_official_t2i import TINY, random_state

transformers = pytest.importorskip("transformers", reason="the gemma encoder is optional (pip install transformers)")
tokenizers = pytest.importorskip("tokenizers", reason="comes with transformers")

WORDS = ["<pad>", "<eos>", "<bos>", "<unk>", "a", "red", "circle", "blue", "square", "two", "left", "of"]
HIDDEN = 32


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    """A Gemma-3 text model (2 layers, hidden 32) and a word-level tokenizer that adds ``<bos>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    folder = tmp_path_factory.mktemp("gemma")
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                                pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(folder)
    config = transformers.Gemma3TextConfig(
        vocab_size=len(WORDS), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=64, sliding_window=4, pad_token_id=0,
        bos_token_id=2, eos_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformers.Gemma3ForCausalLM(config).save_pretrained(folder)
    return folder


def _encoder(folder, **options) -> GemmaTextEncoder:
    return build_gemma(GemmaTextConfig(path=str(folder), max_length=8, dim=HIDDEN, dtype="float64", **options))


def _reference_states(folder, captions, hidden_state=-1):
    """The official ``encode_prompt``: pad to max_length, the decoder's hidden states, then cut."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "right"
    tokens = tokenizer(captions, padding="max_length", max_length=8, truncation=True, return_tensors="pt")
    decoder = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).get_decoder()
    with torch.no_grad():
        out = decoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, output_hidden_states=True)
    states = out.last_hidden_state if hidden_state == -1 else out.hidden_states[hidden_state]
    return states, tokens.attention_mask.bool()


def test_tokenize_pads_right_and_cuts_to_the_longest_caption(gemma_dir):
    encoder = _encoder(gemma_dir)
    ids, mask = encoder.tokenize(["a red circle", "blue", ""])
    assert ids.shape == mask.shape == (3, 4)  # <bos> a red circle
    assert ids[:, 0].tolist() == [2, 2, 2]
    assert mask.sum(dim=1).tolist() == [4, 2, 0]  # the empty caption: the null condition
    assert ids[2, 1:].tolist() == [0, 0, 0]
    ids, mask = encoder.tokenize(["a red circle left of two blue square circle"])  # 11 tokens: truncated
    assert ids.shape == (1, 8)


@pytest.mark.parametrize(("hidden_state", "index"), [("last", -1), ("penultimate", -2)])
def test_states_are_the_official_encoding_cut_to_the_batch(gemma_dir, hidden_state, index):
    encoder = _encoder(gemma_dir, hidden_state=hidden_state)
    captions = ["a red circle", "two blue square left of a red circle"]
    ids, mask = encoder.tokenize(captions)
    got = encoder(ids, mask)
    expected, full_mask = _reference_states(gemma_dir, captions, index)
    length = int(full_mask.sum(dim=1).max())
    assert got.shape == (2, length, HIDDEN) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected[:, :length].float(), rtol=1e-6, atol=1e-6)


def test_the_null_caption_is_the_empty_prompt_at_full_length(gemma_dir, tmp_path):
    encoder = _encoder(gemma_dir)
    expected, _ = _reference_states(gemma_dir, [""])
    torch.testing.assert_close(encoder.null_caption(), expected[0].float(), rtol=1e-6, atol=1e-6)
    out = tmp_path / "null.pt"
    assert gemma_main(["null-caption", "--path", str(gemma_dir), "--out", str(out), "--max-length", "8",
                       "--dtype", "float64"]) == 0
    torch.testing.assert_close(torch.load(out, weights_only=True), expected[0].float(), rtol=1e-6, atol=1e-6)
    assert gemma_main(["null-caption", "--path", str(gemma_dir), "--out", str(out)]) == 2  # never overwritten


def test_a_wrong_width_or_folder_is_one_clear_error(gemma_dir, tmp_path):
    encoder = build_gemma(GemmaTextConfig(path=str(gemma_dir), dim=HIDDEN + 1, dtype="float64"))
    with pytest.raises(GenflowError, match="has hidden size 32"):
        encoder.model()
    with pytest.raises(GenflowError, match="no Gemma tokenizer there"):
        build_gemma(GemmaTextConfig(path=str(tmp_path / "none"))).tokenize(["a"])


def test_without_transformers_the_error_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    encoder = build_gemma(GemmaTextConfig())  # builds (a run folder loads), fails on first use
    with pytest.raises(GenflowError, match=r"needs the transformers package: pip install transformers"):
        encoder.tokenize(["a red circle"])
    with pytest.raises(GenflowError, match=r"pip install transformers"):
        encoder(torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))


def test_padding_does_not_change_the_states_of_real_tokens(gemma_dir):
    encoder = _encoder(gemma_dir)
    ids, mask = encoder.tokenize_padded(["a red circle", "blue"])
    full = encoder(ids, mask)
    cut = encoder(ids[:, :4], mask[:, :4])
    torch.testing.assert_close(cut[mask[:, :4]], full[:, :4][mask[:, :4]], rtol=1e-6, atol=1e-6)


def import_text_run(tmp_path, gemma_dir, monkeypatch, capsys):
    """A tiny official-layout T2I model with the gemma encoder, imported into ``tmp_path / "run"``."""
    model = attrs.evolve(TINY, cap_dim=HIDDEN, max_length=8, text_encoder="gemma", text_encoder_path=str(gemma_dir))
    monkeypatch.setitem(OFFICIAL_MODELS, "debug-text", model)
    write_safetensors(tmp_path / "tim.safetensors", random_state(model, dtype=torch.float32))
    assert gemma_main(["null-caption", "--path", str(gemma_dir), "--out", str(tmp_path / "null.pt"),
                       "--max-length", "8"]) == 0
    run = tmp_path / "run"
    code = main(["import", "tim-official", str(tmp_path / "tim.safetensors"), "--preset", "debug-text",
                 "--out", str(run), "--null-caption", str(tmp_path / "null.pt")])
    assert code == 0, capsys.readouterr().err
    return run


def test_an_imported_t2i_run_samples_a_prompt_with_gemma(capsys, tmp_path, gemma_dir, monkeypatch):
    run = import_text_run(tmp_path, gemma_dir, monkeypatch, capsys)
    weights = torch.load(run / "model.pt", weights_only=True)["model"]
    assert not any(k.startswith("text_encoder.") for k in weights)  # Gemma stays in its folder
    code = main(["sample", str(run), "--prompt", "a red circle", "--prompt", "", "--steps", "1,2", "--num", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    arrays = sorted((run / "samples").glob("*.npy"))
    assert arrays and all(np.isfinite(np.load(a)).all() for a in arrays)


def test_an_imported_t2i_run_fine_tunes_on_a_captioned_store(capsys, tmp_path, gemma_dir, monkeypatch):
    from tests.unit.data.helpers import write_shapes

    store = str(tmp_path / "shapes.zarr")
    write_shapes(store, resolution=8, count=40, mode="multi")  # (3, 8, 8) with captions
    run = import_text_run(tmp_path, gemma_dir, monkeypatch, capsys)
    imported = torch.load(run / "model.pt", weights_only=True)["model"]
    code = main(["train", "--resume", "--run-dir", str(run), "--no-progress", f"data.url='{store}'", "train.steps=1",
                 "train.lr=1e-6", "train.batch_size=8", "train.checkpoint_every=0", "sample.steps=[1]", "sample.num=2"])
    assert code == 0, capsys.readouterr().err
    tuned = torch.load(run / "model.pt", weights_only=True)["model"]
    assert set(tuned) == set(imported)
    # one AdamW step moves each weight by about lr at most; the null caption is a buffer, unchanged
    assert max(float((tuned[k] - imported[k]).abs().max()) for k in imported) <= 2e-6
    torch.testing.assert_close(tuned["backbone.null_caption"], imported["backbone.null_caption"], rtol=0, atol=0)
