"""Tokenizers for runs: ``genflow tokenizer train`` and the automatic one of ``genflow train``.

A run whose data carries captions and whose text encoder has a ``tokenizer`` option left empty gets
a sentencepiece model trained on the store's captions before training starts, cached under
``$GENFLOW_CACHE/tokenizers/`` (keyed by the store, its size and the vocabulary size, made once
under a file lock so concurrent ranks share it). The run's resolved ``config.toml`` then records
the tokenizer's path and SHA-256 (``text_encoder.tokenizer`` / ``tokenizer_sha256``), which every
later load checks.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import attrs
from filelock import FileLock

from genflow.commands import numbers
from genflow.config import RunConfig
from genflow.errors import GenflowError
from genflow.plugins import PluginManager
from genflow.text.tokenizer import sha256_file, store_captions, train_tokenizer

#: Bumped when :func:`train_tokenizer` changes (part of the cache key of automatic tokenizers).
TOKENIZER_VERSION = 2


def _store_url(dataset: Any) -> str:
    store = getattr(dataset, "store", None)
    url = getattr(store, "url", None)
    if not isinstance(url, str):
        raise GenflowError("text_encoder.tokenizer is empty and this dataset is not a latent store, so no "
                           "tokenizer can be trained for it; set text_encoder.tokenizer = \"FILE\"")
    return url


def auto_tokenizer(url: str, vocab_size: int, cache: pathlib.Path) -> pathlib.Path:
    """The cached tokenizer of the store at ``url`` with ``vocab_size``, trained on first use."""
    from genflow.data.sources import digest
    from genflow.data.store import LatentStore

    count = LatentStore(url).count
    path = cache / "tokenizers" / f"{digest([url, count, vocab_size, TOKENIZER_VERSION])[:16]}-{vocab_size}.model"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            train_tokenizer(store_captions(url), vocab_size, path)
    return path


def resolve_tokenizer(config: RunConfig, manager: PluginManager) -> RunConfig:
    """``config`` with its text encoder's tokenizer path and checksum filled in (trained on the data's
    captions when empty); unchanged when the data has no captions or the encoder has no
    ``tokenizer`` option."""
    options = config.text_encoder.options
    if not attrs.has(type(options)) or "tokenizer" not in attrs.fields_dict(type(options)):
        return config
    from genflow.components.build import cache_dir

    selection = config.data
    dataset = manager.get("dataset", selection.name).build(selection.options, cache_dir=cache_dir())
    if not dataset.spec.text:
        return config
    if options.tokenizer:
        path = pathlib.Path(options.tokenizer).expanduser()
        if not path.is_file():
            raise GenflowError(f"text_encoder.tokenizer '{options.tokenizer}' does not exist; train one with "
                               "genflow tokenizer train --data STORE --vocab-size N --out FILE (or leave it empty)")
    else:
        path = auto_tokenizer(_store_url(dataset), options.vocab_size, cache_dir())
    checksum = sha256_file(path)
    if options.tokenizer_sha256 and options.tokenizer_sha256 != checksum:
        raise GenflowError(f"text_encoder.tokenizer '{path}' has SHA-256 {checksum[:12]}... but the config says "
                           f"{options.tokenizer_sha256[:12]}...; the file was replaced")
    new = attrs.evolve(options, tokenizer=str(path.resolve()), tokenizer_sha256=checksum)
    return attrs.evolve(config, text_encoder=attrs.evolve(config.text_encoder, options=new))


# ------------------------------------------------------------------------------------------------
# genflow tokenizer train
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``genflow tokenizer train --data STORE --vocab-size N --out FILE``."""
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", parser_class=type(parser))
    train = sub.add_parser("train", help="train a sentencepiece tokenizer on a store's captions")
    train.add_argument("--data", required=True, metavar="STORE", help="a latent store with captions (path or URL)")
    train.add_argument("--vocab-size", type=numbers.positive, default=1000, help="vocabulary size, an upper bound (default 1000)")
    train.add_argument("--out", required=True, metavar="FILE", help="the sentencepiece model to write")
    train.add_argument("--overwrite", action="store_true", help="replace the file --out if it exists")


def run(args: argparse.Namespace) -> int:
    if args.tokenizer_command != "train":
        raise GenflowError("genflow tokenizer: expected an action: train (see 'genflow tokenizer --help')")
    out = pathlib.Path(args.out).expanduser()
    if out.is_dir():
        raise GenflowError(f"--out '{out}' is a folder; give a file name such as tokenizer.model")
    if out.exists() and not args.overwrite:
        raise GenflowError(f"--out '{out}' exists; pass --overwrite to replace it, or choose another file")
    train_tokenizer(store_captions(args.data), args.vocab_size, out)
    from genflow.text.tokenizer import Tokenizer

    tokenizer = Tokenizer(out)
    print(f"genflow: wrote tokenizer {out} ({tokenizer.vocab_size} pieces, sha256 {tokenizer.sha256})")
    return 0
