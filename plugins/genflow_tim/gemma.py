"""``gemma``: the official TiM text-to-image text encoder (arXiv 2509.04394; ``google/gemma-3-1b-it``)
through ``transformers``, frozen, as a genflow ``text_encoder`` (optional: needs ``pip install transformers``).

As the official code encodes a caption (``tim/models/utils/text_encoders.py``): the tokenizer pads
on the right to ``max_length`` (256) and truncates; the decoder of ``AutoModelForCausalLM`` (Gemma
without its LM head) reads the ids with the attention mask, and the states are its last hidden
state (``hidden_state = "last"``; ``"penultimate"``: ``hidden_states[-2]``); a batch keeps its first
``max(mask.sum(1))`` positions, padding states included (the backbone reads them as keys). Gemma
is causal, so truncating before or after encoding gives the same states. The official code loads
Gemma in bfloat16 with ``attn_implementation = "flash_attention_2"``; the states at padding
positions depend on the attention implementation (``attention``).

The weights are not part of the run's state dict (they stay where ``path`` points: a local folder
or a hub id in the local cache) and are loaded on first use. The empty caption is genflow's null
condition (an all-False mask), for which the backbone reads the stored official null caption. ``python -m genflow_tim.gemma
null-caption --path DIR --out FILE`` writes the official null caption (the empty prompt's states,
``(max_length, dim)``) that ``genflow import tim-official --null-caption FILE`` needs.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from genflow.config.domains import positive, text
from genflow.errors import GenflowError
from genflow.interfaces import DataSpec, TextEncoder

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


@attrs.frozen(kw_only=True)
class GemmaTextConfig:
    """``path``: a local Gemma folder or hub id (``transformers`` ``from_pretrained``); ``max_length``:
    tokens per caption (the official ``max_seq_length``); ``dim``: the model's hidden size (checked
    on load); ``hidden_state``: ``"last"`` (the official ``use_last_hidden_state``) or
    ``"penultimate"``; ``dtype``: Gemma's weights and compute; ``attention``: transformers'
    ``attn_implementation`` (the official code: ``flash_attention_2``, GPU only)."""

    path: str = attrs.field(default="google/gemma-3-1b-it", validator=text())
    max_length: int = attrs.field(default=256, validator=positive())
    dim: int = attrs.field(default=1152, validator=positive())
    hidden_state: Literal["last", "penultimate"] = attrs.field(
        default="last", validator=attrs.validators.in_(("last", "penultimate")))
    dtype: Literal["bfloat16", "float32", "float64"] = attrs.field(
        default="bfloat16", validator=attrs.validators.in_(tuple(_DTYPES)))
    attention: Literal["sdpa", "eager", "flash_attention_2"] = attrs.field(
        default="sdpa", validator=attrs.validators.in_(("sdpa", "eager", "flash_attention_2")))


def require_transformers() -> Any:
    """The ``transformers`` module, or one line naming how to install it."""
    try:
        import transformers
    except ImportError:
        raise GenflowError("text_encoder 'gemma' needs the transformers package: pip install transformers") from None
    return transformers


class GemmaTextEncoder(TextEncoder):
    """The frozen Gemma encoder (see the module docstring); no trainable parameters of its own."""

    external_weights = True

    def __init__(self, config: GemmaTextConfig) -> None:
        super().__init__()
        self.config = config
        self.dim = config.dim
        # Held outside the module tree: Gemma's weights are neither saved with the run nor averaged.
        self._loaded: dict[str, Any] = {}

    def _tokenizer(self) -> Any:
        if "tokenizer" not in self._loaded:
            transformers = require_transformers()
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(self.config.path)
            except (OSError, ValueError) as exc:
                raise GenflowError(f"text_encoder.path '{self.config.path}': no Gemma tokenizer there "
                                   f"({type(exc).__name__}); download google/gemma-3-1b-it or set the folder") from None
            tokenizer.padding_side = "right"
            self._loaded["tokenizer"] = tokenizer
        return self._loaded["tokenizer"]

    def model(self) -> Any:
        """The Gemma decoder, loaded on first use, frozen, in ``eval`` mode."""
        if "model" not in self._loaded:
            transformers = require_transformers()
            try:
                causal = transformers.AutoModelForCausalLM.from_pretrained(
                    self.config.path, dtype=_DTYPES[self.config.dtype], attn_implementation=self.config.attention)
            except (OSError, ValueError, ImportError) as exc:
                raise GenflowError(f"text_encoder.path '{self.config.path}': cannot load Gemma "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
            decoder = causal.get_decoder().requires_grad_(False).eval()
            if decoder.config.hidden_size != self.config.dim:
                raise GenflowError(f"text_encoder.dim = {self.config.dim} but '{self.config.path}' has hidden "
                                   f"size {decoder.config.hidden_size}")
            self._loaded["model"] = decoder
        return self._loaded["model"]

    def tokenize_padded(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(ids, mask)`` ``(N, max_length)``: right-padded, truncated (the official ``encode_prompt``)."""
        tokens = self._tokenizer()(list(captions), padding="max_length", max_length=self.config.max_length,
                                   truncation=True, return_tensors="pt")
        return tokens.input_ids.long(), tokens.attention_mask.bool()

    def tokenize(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """The padded ids cut to the batch's longest caption, as the official sampler and trainer do.
        The empty caption gets an all-False mask: genflow's null condition, for which the backbone
        reads the official null caption (the empty prompt's states), as the official code does."""
        ids, mask = self.tokenize_padded(captions)
        mask[torch.tensor([c == "" for c in captions], dtype=torch.bool)] = False
        length = max(int(mask.sum(dim=1).max()), 1)
        return ids[:, :length], mask[:, :length]

    def init_weights(self) -> None:
        """Nothing to initialise: Gemma's weights load on first use (:meth:`model`)."""

    @torch.no_grad()
    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``(N, L, dim)`` Gemma states in float32; rows without a real token (the null condition,
        whose states the backbone replaces) are encoded with their first position visible."""
        model = self.model()
        device = ids.device
        if next(model.parameters()).device != device:
            model.to(device)
        visible = mask.clone()
        visible[:, 0] |= ~mask.any(dim=1)
        out = model(input_ids=ids, attention_mask=visible.long(), output_hidden_states=True)
        states = out.last_hidden_state if self.config.hidden_state == "last" else out.hidden_states[-2]
        return states.float()

    def null_caption(self) -> Tensor:
        """The official null caption: the empty prompt's states at all ``max_length`` positions."""
        ids, mask = self.tokenize_padded([""])
        return self(ids, mask)[0]  # (max_length, dim)

    def provenance(self) -> dict[str, Any]:
        return {"path": self.config.path}


def build_gemma(config: GemmaTextConfig, *, spec: DataSpec | None = None, **_: object) -> GemmaTextEncoder:
    """Registry factory of the ``gemma`` text encoder. Nothing loads here: its first use is one line
    naming ``pip install transformers`` when that is missing, or naming ``path`` when Gemma is not
    there."""
    return GemmaTextEncoder(config)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m genflow_tim.gemma null-caption --path DIR --out FILE [--max-length N]``."""
    parser = argparse.ArgumentParser(prog="python -m genflow_tim.gemma")
    parser.add_argument("action", choices=["null-caption"])
    parser.add_argument("--path", default=GemmaTextConfig.path, help="the Gemma folder or hub id")
    parser.add_argument("--out", required=True, help="the tensor file to write (torch .pt)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtype", default="bfloat16", choices=tuple(_DTYPES))
    parser.add_argument("--attention", default="sdpa", choices=("sdpa", "eager", "flash_attention_2"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    try:
        if out.exists():
            raise GenflowError(f"--out '{out}' exists; choose a new file")
        transformers = require_transformers()
        config = transformers.AutoConfig.from_pretrained(args.path)
        dim = getattr(config, "hidden_size", None) or config.get_text_config().hidden_size
        encoder = GemmaTextEncoder(GemmaTextConfig(path=args.path, max_length=args.max_length, dim=dim,
                                                   dtype=args.dtype, attention=args.attention))
        null = encoder.null_caption()
    except GenflowError as exc:
        print(f"genflow: error: {exc}")
        return 2
    torch.save(null, out)
    print(f"genflow: wrote the null caption {tuple(null.shape)} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
