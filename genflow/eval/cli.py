"""``genflow eval RUN_DIR``: metrics per step count (filled in by the evaluation issue)."""

from __future__ import annotations

import argparse

from genflow.errors import GenflowError
from genflow.plugins import PluginManager
from genflow.sampling_cli import add_common_arguments


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--metrics", help="comma-separated metric names (default: all that fit the data)")


def run_eval(args: argparse.Namespace, manager: PluginManager) -> int:
    raise GenflowError("genflow eval is not available yet in this version; use genflow sample")
