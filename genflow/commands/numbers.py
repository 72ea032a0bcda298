"""Numbers given on the command line, checked at the door: argparse ``type=`` functions.

Integers are ASCII digits only (Python's ``int`` also reads other scripts' digits, e.g. ``"١٢"``),
within a stated range; floats are finite (``nan`` and ``inf`` are refused). A bad value becomes
``argument --num: ...`` through the parser's one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

#: Largest seed: torch and numpy generators take 64-bit seeds; genflow derives others as seed + k.
MAX_SEED = 2**63 - 1
#: Most samples one ``sample`` / ``eval`` call makes (memory, not a statistical limit).
MAX_SAMPLES = 1_000_000
#: Largest step number, class index, batch size or count on the command line.
MAX_COUNT = 2**31 - 1

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def integer(low: int, high: int) -> Callable[[str], int]:
    """An ASCII integer in ``[low, high]``."""

    def parse(text: str) -> int:
        stripped = text.strip()  # str.strip drops more than int() does (e.g. "\x1f"): parse what was checked
        if not _INTEGER.fullmatch(stripped):
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high} (ASCII digits), got {text!r}")
        value = int(stripped)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {low}..{high}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def finite_float(text: str) -> float:
    """A finite decimal number (``1``, ``-0.5``, ``2e-3``); ``nan`` and ``inf`` are refused."""
    stripped = text.strip()  # parse what was checked (str.strip drops more than float() does)
    if not _NUMBER.fullmatch(stripped) or not math.isfinite(value := float(stripped)):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


seed = integer(0, MAX_SEED)
samples = integer(1, MAX_SAMPLES)
count = integer(0, MAX_COUNT)
positive = integer(1, MAX_COUNT)
