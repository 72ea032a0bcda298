"""The domain of every config value: what a field allows beyond its type, checked at the door.

Every field of a config class (``TrainConfig``, ``SampleConfig`` and every registered component's
``config``) declares its domain with a :class:`Domain` validator, unless its type alone is the
domain (``bool`` or a ``Literal`` of choices). ``tests/contract`` walks every field of every
registered component and fails on a field without one, so a new key cannot skip the check.

Floats are finite everywhere (the strict converter refuses ``inf`` and ``nan``), and integers fit
in 64 bits; a ``Domain`` adds ranges, non-empty lists and per-item domains. A value outside its
domain is a :class:`DomainError`; ``genflow.config.convert.structure`` turns it into one line
naming the dotted key, the value and what is allowed.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from genflow.errors import ConfigError

#: The largest magnitude of a config integer (TOML integers are signed 64-bit).
INT_LIMIT = 2**63 - 1


class DomainError(ConfigError, ValueError):
    """A config value of the right type outside its field's domain (a ``ConfigError``: one line,
    exit 2, wherever the config class is built). ``key`` may be several keys whose values together
    leave their joint domain (e.g. two ratios that share a batch): the message names each."""

    def __init__(self, key: str | tuple[str, ...], value: Any, expected: str) -> None:
        self.keys = (key,) if isinstance(key, str) else tuple(key)
        super().__init__(f"{' + '.join(self.keys)} = {value!r}: expected {expected}")
        self.value = value
        self.expected = expected


@attrs.frozen
class Domain:
    """An attrs validator: ``check(value)`` is true inside the domain, ``text`` describes it."""

    text: str
    check: Callable[[Any], bool] = attrs.field(eq=False, repr=False)

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not self.check(value):
            raise DomainError(attribute.name, value, self.text)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def interval(low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False, integer: bool = False) -> Domain:
    """Numbers in an interval, e.g. ``interval(0, 1, high_open=True)`` is ``[0, 1)``."""

    def check(value: Any) -> bool:
        if not _is_number(value) or (integer and not isinstance(value, int)):
            return False
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        return above and below

    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        text = f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = f"{kind} {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        text = f"{kind} {'<' if high_open else '<='} {high:g}"
    else:
        text = f"any finite {'integer' if integer else 'number'}"
    return Domain(text, check)


def positive(*, integer: bool = True) -> Domain:
    """``> 0``: sizes, counts, step counts, rates."""
    return interval(0, low_open=True, integer=integer)


def non_negative(*, integer: bool = True) -> Domain:
    """``>= 0``: counts where 0 means off, seeds."""
    return interval(0, integer=integer)


def finite() -> Domain:
    """Any finite real number (e.g. the mean of a logit-normal)."""
    return interval()


def unit(*, high_open: bool = False, low_open: bool = False) -> Domain:
    """``[0, 1]`` (ratios, probabilities); ``high_open`` gives ``[0, 1)`` (decays, betas)."""
    return interval(0, 1, low_open=low_open, high_open=high_open)


def text(*, empty: bool = False) -> Domain:
    """A string; non-empty unless ``empty``."""
    return Domain("any text" if empty else "a non-empty text", lambda v: isinstance(v, str) and (empty or bool(v)))


def one_of(values: Sequence[str]) -> Domain:
    """One of a fixed vocabulary of strings."""
    return Domain("one of " + ", ".join(repr(v) for v in values), lambda v: isinstance(v, str) and v in values)


def hex_digest(length: int = 64) -> Domain:
    """A lowercase hex checksum of ``length`` digits (SHA-256: 64), or empty (not recorded yet)."""
    digits = set("0123456789abcdef")

    def check(value: Any) -> bool:
        return isinstance(value, str) and (not value or (len(value) == length and set(value) <= digits))

    return Domain(f"empty or {length} lowercase hex digits", check)


def each(item: Domain, *, min_len: int = 1, max_len: int | None = None, ordered: bool = False,
         distinct: bool = False) -> Domain:
    """A list whose items are all in ``item``, with ``min_len`` to ``max_len`` entries; ``ordered``:
    non-decreasing (an interval ``(low, high)``); ``distinct``: no item twice."""

    def check(value: Any) -> bool:
        if not isinstance(value, Sequence) or isinstance(value, str):
            return False
        if len(value) < min_len or (max_len is not None and len(value) > max_len):
            return False
        if not all(item.check(v) for v in value):
            return False
        if ordered and any(a > b for a, b in zip(value, value[1:], strict=False)):
            return False
        return not distinct or len(set(value)) == len(value)

    if max_len is None:
        count = f"at least {min_len} item(s)"
    else:
        count = f"{min_len} item(s)" if max_len == min_len else f"{min_len} to {max_len} items"
    extra = (", in increasing order" if ordered else "") + (", no item twice" if distinct else "")
    return Domain(f"a list of {count}, each {item.text}{extra}", check)


# ------------------------------------------------------------------------------------------------
# the contract: every field has a domain
# ------------------------------------------------------------------------------------------------


def domain_of(field: attrs.Attribute) -> Domain | None:
    """The ``Domain`` among ``field``'s validators, or None."""
    stack = [field.validator]
    while stack:
        validator = stack.pop()
        if isinstance(validator, Domain):
            return validator
        stack.extend(getattr(validator, "_validators", ()))
    return None


def self_describing(tp: Any) -> bool:
    """``bool`` and ``Literal`` fields: the strict converter already checks their whole domain."""
    return tp is bool or tp == "bool" or typing.get_origin(tp) is typing.Literal


def fields_without_domain(cls: type) -> list[str]:
    """Names of ``cls``'s fields that declare no domain (nested attrs classes are walked)."""
    hints = typing.get_type_hints(cls)
    missing: list[str] = []
    for field in attrs.fields(cls):
        tp = hints.get(field.name, field.type)
        if attrs.has(tp):
            missing += [f"{field.name}.{name}" for name in fields_without_domain(tp)]
        elif not self_describing(tp) and domain_of(field) is None:
            missing.append(field.name)
    return missing
