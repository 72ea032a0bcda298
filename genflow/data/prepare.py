"""``genflow prepare``: write a latent store from a built-in dataset or an image folder.

    genflow prepare --dataset shapes --resolution 32 --count 20000 --out shapes32.zarr
    genflow prepare --dataset imagefolder --root photos/ --resolution 256 --autoencoder diffusers-kl \\
        --out s3://bucket/photos256.zarr
    genflow prepare --dataset shapes --option mode='"multi"' --option 'aspect_ratios=[1.0, 2.0]' --out x.zip
    genflow prepare --dataset imagefolder --root digits/ --resolution 8 --multiple 8 --holdout 0.2 --out d.zarr

``--option KEY=VALUE`` sets a dataset config field, ``--ae-option KEY=VALUE`` an autoencoder one;
values are TOML literals (bare words are strings). ``--holdout F`` (imagefolder) sets aside a
fraction ``F`` of each class in a second store next to ``--out`` (:mod:`genflow.data.splits`),
which ``genflow eval`` uses as its real images. The CLI (``genflow.cli``) calls
:func:`add_arguments` and :func:`run`; errors are ``GenflowError`` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import cattrs

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from genflow.commands import numbers
from genflow.data.imagefolder import ImageFolderConfig, ImageFolderSource
from genflow.data.pipeline import prepare_store
from genflow.data.shapes import ShapesConfig
from genflow.data.sources import ShapesSource, Source, Toy2DSource, Toy2DSourceConfig
from genflow.data.splits import holdout_url
from genflow.data.writer import check_target
from genflow.errors import GenflowError, allowed

#: Dataset name -> (config class, source class).
SOURCES: dict[str, tuple[type, Callable[[Any], Source]]] = {
    "shapes": (ShapesConfig, ShapesSource),
    "imagefolder": (ImageFolderConfig, ImageFolderSource),
    "toy2d": (Toy2DSourceConfig, Toy2DSource),
}
_converter = cattrs.Converter(forbid_extra_keys=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``genflow prepare``'s arguments to ``parser``."""
    parser.add_argument("--dataset", required=True, choices=sorted(SOURCES), help="what to write")
    parser.add_argument("--out", required=True, metavar="URL", help="store URL: path, memory://, zip::, s3://, ...")
    parser.add_argument("--root", help="imagefolder: the image folder")
    parser.add_argument("--resolution", type=numbers.positive, help="image side (pixel area of every bucket)")
    parser.add_argument("--count", type=numbers.positive, help="shapes / toy2d: number of samples")
    parser.add_argument("--seed", type=numbers.seed, help="generator seed (shapes, toy2d) or row order (imagefolder)")
    parser.add_argument("--multiple", type=numbers.positive, help="bucket sides are multiples of this many pixels")
    parser.add_argument("--holdout", type=numbers.finite_float, metavar="FRACTION",
                        help="imagefolder: set aside this fraction of each class in OUT's -holdout sibling store")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset config field")
    parser.add_argument("--autoencoder", default="identity", help="autoencoder plugin (default: identity)")
    parser.add_argument("--ae-option", action="append", default=[], metavar="KEY=VALUE", help="autoencoder field")
    parser.add_argument("--chunk", type=numbers.count, default=0, help="samples per chunk (default: about 4 MiB)")
    parser.add_argument("--flip", action="store_true", help="also store latents of mirrored images")
    parser.add_argument("--overwrite", action="store_true", help="replace a complete store at --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, manager: Any) -> int:
    """Run ``genflow prepare``; ``manager`` is a ``genflow.plugins.PluginManager``."""
    fields = _dataset_fields(args)
    targets = {args.out: build_source(args.dataset, fields)}
    if fields.get("holdout", 0.0):
        targets[holdout_url(args.out)] = build_source(args.dataset, {**fields, "split": "holdout"})
    component = manager.get("autoencoder", args.autoencoder)
    ae_config = structure(component.config, parse_options(args.ae_option), f"autoencoder '{args.autoencoder}'")
    autoencoder = component.build(ae_config)
    for url in targets:  # every target is checked before anything is written
        check_target(url, overwrite=args.overwrite)
    for url, source in targets.items():
        result = prepare_store(
            source,
            autoencoder,
            url,
            chunk=args.chunk,
            flip=args.flip,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        verb = "resumed and finished" if result.resumed else "wrote"
        print(f"genflow prepare: {verb} {result.count} samples to {result.url} in {result.seconds:.1f} s",
              file=sys.stderr)
    return 0


def build_source(name: str, fields: dict[str, Any]) -> Source:
    """The source ``name`` with config ``fields`` (unknown names or fields are a ``GenflowError``)."""
    if name not in SOURCES:
        raise GenflowError(f"unknown dataset '{name}' for prepare; allowed: {allowed(SOURCES)}")
    config_cls, source_cls = SOURCES[name]
    return source_cls(structure(config_cls, fields, f"dataset '{name}'"))


def _dataset_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    known = attrs.fields_dict(SOURCES[args.dataset][0])
    for flag in ("root", "resolution", "count", "seed", "multiple"):
        value = getattr(args, flag)
        if value is None:
            continue
        if flag not in known:
            raise GenflowError(f"--{flag} does not apply to dataset '{args.dataset}'; its options: {allowed(known)}")
        fields[flag] = value
    if args.dataset == "imagefolder" and args.root is None:
        raise GenflowError("--dataset imagefolder needs --root DIR")
    fields.update(parse_options(args.option))
    if "split" in fields:
        raise GenflowError("--option split: prepare chooses the split itself; use --holdout FRACTION")
    if args.holdout is not None:
        if "holdout" not in known:
            raise GenflowError(f"--holdout does not apply to dataset '{args.dataset}'; it applies to imagefolder")
        if not 0.0 < args.holdout < 1.0:
            raise GenflowError(f"--holdout {args.holdout}: expected a fraction between 0 and 1 (e.g. 0.2)")
        fields["holdout"] = args.holdout
    return fields


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b=[1, 2]", "c=word"]`` -> ``{"a": 1, "b": [1, 2], "c": "word"}`` (TOML literals)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise GenflowError(f"option '{item}' is not KEY=VALUE")
        try:
            options[key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            options[key.strip()] = text  # a bare word is a string
    return options


def structure(cls: type, fields: dict[str, Any], what: str) -> Any:
    """``cls(**fields)`` checked by cattrs; a bad key or value is a ``GenflowError`` naming it."""
    known = attrs.fields_dict(cls)
    for key in fields:
        if key not in known:
            raise GenflowError(f"unknown option '{key}' for {what}; allowed: {allowed(known)}")
    try:
        return _converter.structure(fields, cls)
    except Exception as exc:
        details = "; ".join(str(e) for e in getattr(exc, "exceptions", [exc]))
        raise GenflowError(f"invalid options {fields} for {what}: {details}") from None
