"""Sentencepiece tokenizers: round trip, byte fallback, padding, truncation, checksums, bad files."""

from __future__ import annotations

import pytest

from genflow.errors import GenflowError
from genflow.text.tokenizer import PAD_ID, Tokenizer, sha256_file, train_tokenizer

CAPTIONS = [f"{n} {c} {s}" for n in ("a", "two", "three") for c in ("red", "green", "blue") for s in
            ("circle", "square", "circles left of a star")] * 4


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = train_tokenizer(CAPTIONS, 400, tmp_path_factory.mktemp("tok") / "tok.model")
    return Tokenizer(path)


@pytest.mark.parametrize("text", ["two red circles left of a star", "a blue square", "zebra quantum",
                                  "trois cercles rouges \u00e9\u00e8", "\u4e09\u4e2a\u7ea2\u5706 \U0001F7E5",
                                  "\u0926\u094b \u0932\u093e\u0932", "MiXeD  case\ttab"])
def test_round_trip_any_text(tokenizer, text):
    ids = tokenizer.ids(text)
    assert ids and PAD_ID not in ids and 1 not in ids  # byte fallback: no unknown token, ever
    assert tokenizer.decode(ids) == " ".join(text.split())  # sentencepiece normalises whitespace runs


def test_words_of_the_captions_are_single_pieces(tokenizer):
    assert len(tokenizer.ids("two red circles left of a star")) <= 8


def test_padding_mask_and_empty_caption(tokenizer):
    ids, mask = tokenizer(["a red circle", "", "two blue circles left of a star"], max_length=32)
    assert ids.shape == mask.shape and ids.shape[0] == 3
    assert not mask[1].any() and (ids[~mask] == PAD_ID).all()
    assert mask[2].all() and mask[0].sum() == len(tokenizer.ids("a red circle"))
    ids, mask = tokenizer(["", ""], max_length=32)
    assert ids.shape == (2, 1) and not mask.any()


def test_long_captions_are_truncated_with_one_warning(tokenizer):
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = tokenizer(["x" * 10_000, "a red circle"], max_length=16)
    assert ids.shape == (2, 16) and mask[0].all()


def test_training_is_deterministic(tmp_path):
    a = train_tokenizer(CAPTIONS, 400, tmp_path / "a.model")
    b = train_tokenizer(CAPTIONS, 400, tmp_path / "b.model")
    assert sha256_file(a) == sha256_file(b)


def test_bad_inputs(tmp_path, tokenizer):
    with pytest.raises(GenflowError, match="does not exist"):
        Tokenizer(tmp_path / "missing.model")
    with pytest.raises(GenflowError, match="replaced since"):
        Tokenizer(tokenizer.path, expected_sha256="0" * 64)
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(GenflowError, match="not a sentencepiece model"):
        Tokenizer(junk)
    with pytest.raises(GenflowError, match="at least"):
        train_tokenizer(CAPTIONS, 10, tmp_path / "small.model")
    with pytest.raises(GenflowError, match="every caption is empty"):
        train_tokenizer(["", " "], 400, tmp_path / "empty.model")
