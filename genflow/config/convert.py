"""A strict cattrs converter: unknown keys and wrong types fail with the dotted path and what is allowed."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn

from genflow.config.domains import INT_LIMIT, DomainError
from genflow.errors import ConfigError, allowed


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    if abs(value) > INT_LIMIT:
        raise TypeError(f"expected an integer within 64 bits (|value| <= {INT_LIMIT}), got {value!r}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    if isinstance(value, int) and abs(value) > INT_LIMIT:
        raise TypeError(f"expected a number within 64 bits, got {value!r}")
    if not math.isfinite(value):
        raise TypeError(f"expected a finite number, got {value!r}")
    return float(value)


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Literal


def _structure_literal(value: Any, tp: Any) -> Any:
    choices = typing.get_args(tp)
    if value not in choices or type(value) is not type(choices[0]):
        raise TypeError(f"got {value!r}; allowed: {', '.join(repr(c) for c in choices)}")
    return value


def make_converter() -> cattrs.Converter:
    """A converter that forbids unknown keys and never coerces between types."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook_func(_is_literal, _structure_literal)
    converter.register_structure_hook_factory(attrs.has, lambda cls: _table_hook(converter, cls))
    return converter


def _table_hook(converter: cattrs.Converter, cls: type) -> Any:
    """Structure a TOML table into attrs class ``cls`` (a nested table, e.g. ``objective.experimental``,
    given as a plain value fails with one line)."""
    inner: Callable[[Any, type], Any] = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True)

    def hook(value: Any, _: type) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a table of settings, got {value!r}")
        return inner(value, cls)

    return hook


CONVERTER = make_converter()


def _first_error(exc: BaseException, path: str) -> str:
    """Walk a cattrs exception tree to its first leaf and describe it with a dotted path."""
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(f"{path}.{k}" if path else k for k in sorted(exc.extra_fields))
        names = [f.name for f in attrs.fields(exc.cl)]
        return f"unknown key {keys}; allowed keys here: {allowed(names)}"
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            notes = getattr(sub, "__notes__", [])
            sub_path = path
            for note in notes:
                if "@ attribute " in note:
                    sub_path = f"{path}.{note.rsplit('@ attribute ', 1)[1]}".lstrip(".")
                elif "@ index " in note:
                    sub_path = f"{path}[{note.rsplit('@ index ', 1)[1]}]"
            return _first_error(sub, sub_path)
    if isinstance(exc, KeyError):
        return f"{path}.{exc.args[0]}: missing required key"
    if isinstance(exc, DomainError):
        keys = " + ".join(f"{path}.{key}" for key in exc.keys)
        return f"{keys} = {_show(exc.value)}: expected {exc.expected}"
    return f"{path}: {exc}"


def structure(data: Any, cls: type, path: str) -> Any:
    """Structure ``data`` (a TOML table) into attrs class ``cls``; errors name ``path``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings, got {data!r}")
    try:
        return CONVERTER.structure(data, cls)
    except (ClassValidationError, ForbiddenExtraKeysError, DomainError) as exc:
        raise ConfigError(_first_error(exc, path)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _show(value: Any) -> str:
    """A config value as TOML shows it (lists with brackets, strings quoted)."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def unstructure(obj: Any) -> Any:
    """attrs instance -> plain TOML-ready data (tuples become lists)."""
    return CONVERTER.unstructure(obj)
