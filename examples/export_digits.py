"""Export scikit-learn's bundled handwritten digits (1797 8x8 grey images, 10 classes; they ship
inside the scikit-learn package, so nothing is downloaded) as a folder of class subfolders of PNG
files, the layout ``genflow prepare --dataset imagefolder`` reads.

    pip install scikit-learn
    python examples/export_digits.py digits/          # digits/0/0000.png ... digits/9/1796.png

Pixel values 0-16 become 0-255 (``round(v * 255 / 16)``); the images stay 8x8, mode ``L``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from PIL import Image


def export(out: pathlib.Path) -> int:
    """Write every digit to ``out/<label>/<index>.png``; returns the number written."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("export_digits: needs scikit-learn (pip install scikit-learn)") from None
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"export_digits: '{out}' exists and is not empty; choose a new folder")
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    for index, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{index:04d}.png")
    return len(pixels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path, help="a new folder")
    args = parser.parse_args(argv)
    count = export(args.out)
    print(f"export_digits: wrote {count} images to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
