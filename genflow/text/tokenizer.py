"""Sentencepiece tokenizers trained on a store's captions (``genflow tokenizer train``).

A tokenizer is one sentencepiece model file (BPE, ``byte_fallback``: a character outside the
vocabulary becomes its UTF-8 bytes, so any prompt in any script tokenizes). Id 0 is padding, 1
unknown (never produced thanks to byte fallback), 2 / 3 beginning / end of sequence. Runs record
the file's path and SHA-256 (``text_encoder.tokenizer`` / ``text_encoder.tokenizer_sha256``) and
refuse a file whose checksum changed.
"""

from __future__ import annotations

import hashlib
import io
import pathlib
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from genflow.errors import GenflowError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
#: Fewer distinct pieces than this cannot hold the 256 byte pieces plus the special ones.
MIN_VOCAB = 300


def sha256_file(path: pathlib.Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_captions(url: str) -> list[str]:
    """Every caption of a latent store, bucket by bucket; a store without captions is an error."""
    from genflow.data.store import LatentStore

    store = LatentStore(url)
    if not store.has_captions:
        raise GenflowError(f"store '{url}' has no captions; a tokenizer is trained on captions "
                           "(genflow prepare --dataset shapes writes them, imagefolder reads <image>.txt files)")
    captions: list[str] = []
    for bucket in store.buckets.values():
        captions.extend(str(c) for c in np.asarray(bucket.arrays["captions"][:]))
    return captions


def train_tokenizer(captions: Iterable[str], vocab_size: int, out: pathlib.Path) -> pathlib.Path:
    """Train a BPE sentencepiece model with byte fallback on ``captions``; write it to ``out``.

    BPE, not unigram: on a small caption vocabulary the unigram trainer prunes to character pieces
    (24 tokens for "three yellow triangles right of a green star"); BPE merges up to whole words
    (8 tokens).

    ``vocab_size`` is an upper bound: a small caption vocabulary (``shapes`` has a few dozen words)
    cannot fill a large one, so training retries with sentencepiece's own limit (``hard_vocab_limit
    = false``). Deterministic for the same captions and size.
    """
    import sentencepiece as spm

    if vocab_size < MIN_VOCAB:
        raise GenflowError(f"--vocab-size {vocab_size}: expected at least {MIN_VOCAB} "
                           "(256 byte pieces for byte fallback plus the special tokens)")
    lines = [c for c in captions if c.strip()]
    if not lines:
        raise GenflowError("cannot train a tokenizer: every caption is empty")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, hard_vocab_limit=False, pad_id=PAD_ID, unk_id=UNK_ID,
        bos_id=BOS_ID, eos_id=EOS_ID, num_threads=1, minloglevel=2, shuffle_input_sentence=False,
        input_sentence_size=0,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(model.getvalue())
    tmp.replace(out)  # atomic: a crash never leaves half a model behind
    return out


class Tokenizer:
    """A loaded sentencepiece model: ``captions -> (ids, mask)`` with padding and truncation.

    ``expected_sha256`` (when given) must match the file: a run refuses a tokenizer other than its own.
    """

    def __init__(self, path: str | pathlib.Path, *, expected_sha256: str = "") -> None:
        import sentencepiece as spm

        self.path = pathlib.Path(path).expanduser()
        if not self.path.is_file():
            raise GenflowError(f"tokenizer '{self.path}' does not exist; train one with "
                               "genflow tokenizer train --data STORE --vocab-size N --out FILE")
        self.sha256 = sha256_file(self.path)
        self._warned = False
        if expected_sha256 and expected_sha256 != self.sha256:
            raise GenflowError(f"tokenizer '{self.path}' has SHA-256 {self.sha256[:12]}... but the run recorded "
                               f"{expected_sha256[:12]}...; it was replaced since (restore the original file)")
        self.model = spm.SentencePieceProcessor()
        try:
            self.model.LoadFromSerializedProto(self.path.read_bytes())
        except Exception as exc:  # not a sentencepiece model: one line, not a traceback
            raise GenflowError(f"tokenizer '{self.path}' is not a sentencepiece model ({str(exc)[:120]})") from None
        if self.model.pad_id() != PAD_ID:
            raise GenflowError(f"tokenizer '{self.path}' has pad id {self.model.pad_id()}; genflow tokenizers "
                               f"use {PAD_ID} (train it with genflow tokenizer train)")

    @property
    def vocab_size(self) -> int:
        return int(self.model.GetPieceSize())

    def ids(self, text: str) -> list[int]:
        """Token ids of one caption, without padding or special tokens."""
        return list(self.model.EncodeAsIds(text))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.model.DecodeIds([i for i in ids if i != PAD_ID]))

    def __call__(self, captions: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
        """``(ids, mask)``: ``(N, L)`` int64 padded with ``PAD_ID`` and ``(N, L)`` bool (True on real
        tokens), ``L`` the longest caption's length capped at ``max_length`` (at least 1). Longer
        captions are cut to ``max_length`` tokens with a warning (the first time); an empty caption has no tokens
        (an all-False mask row: the null condition)."""
        encoded = [self.ids(c) for c in captions]
        cut = [i for i, e in enumerate(encoded) if len(e) > max_length]
        if cut and not self._warned:  # once per tokenizer: a training run would repeat it every batch
            self._warned = True
            longest = max(len(encoded[i]) for i in cut)
            warnings.warn(f"genflow: {len(cut)} caption(s) longer than text_encoder.max_length = {max_length} "
                          f"tokens (up to {longest}) were truncated", stacklevel=2)
        length = max(1, min(max_length, max((len(e) for e in encoded), default=0)))
        ids = torch.full((len(encoded), length), PAD_ID, dtype=torch.long)
        for row, e in enumerate(encoded):
            e = e[:max_length]
            ids[row, : len(e)] = torch.tensor(e, dtype=torch.long)
        return ids, ids != PAD_ID
