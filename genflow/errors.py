"""User-facing errors: one clear line, exit code 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterable


class GenflowError(Exception):
    """A mistake in user input (config, CLI argument, store, checkpoint, prompt).

    The CLI prints ``genflow: error: <message>`` on one line and exits with code 2.
    """

    exit_code = 2


class ConfigError(GenflowError):
    """A config value, key or selector is wrong."""


def allowed(values: Iterable[str]) -> str:
    """Format a sorted, comma-separated list of allowed values for error messages."""
    names = sorted(set(values))
    return ", ".join(names) if names else "(none registered)"
