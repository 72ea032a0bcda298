"""Property-based tests (hypothesis) of config domains and CLI numbers: any value of any field is
either accepted inside its declared domain or refused with one ``ConfigError`` line naming the key;
no other exception escapes. CLI integers are ASCII and in range, CLI floats finite."""

from __future__ import annotations

import argparse
import math
import typing

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from genflow.commands import numbers as cli_numbers
from genflow.config.convert import structure
from genflow.config.domains import domain_of, self_describing
from genflow.config.load import parse_value
from genflow.errors import ConfigError
from tests.contract.test_config_domains import CLASSES

PROPS = settings(max_examples=40, deadline=None)

numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True))
values = st.one_of(numbers, st.booleans(), st.text(max_size=8),
                   st.lists(st.one_of(numbers, st.text(max_size=4)), max_size=4))
FIELDS = [(where, field.name) for where, cls in sorted(CLASSES.items()) for field in attrs.fields(cls)]


def _accepted_value_is_in_domain(cls: type, key: str, obj: object) -> None:
    field = attrs.fields_dict(cls)[key]
    value = getattr(obj, key)
    domain = domain_of(field)
    if domain is not None:
        assert domain.check(value), f"{key} = {value!r} accepted outside '{domain.text}'"
    else:
        assert self_describing(typing.get_type_hints(cls)[key])
    if isinstance(value, float):
        assert math.isfinite(value)


@pytest.mark.parametrize(("where", "key"), FIELDS, ids=[f"{w}.{k}" for w, k in FIELDS])
@PROPS
@given(value=values)
def test_any_value_is_in_the_domain_or_one_line_naming_the_key(where, key, value):
    cls = CLASSES[where]
    try:
        obj = structure({key: value}, cls, "slot")
    except ConfigError as exc:
        assert "\n" not in str(exc) and f"slot.{key}" in str(exc), str(exc)
    else:
        _accepted_value_is_in_domain(cls, key, obj)


@PROPS
@given(text=st.text(max_size=30))
def test_any_override_text_for_a_float_is_finite_or_refused(text):
    from genflow.config.schema import TrainConfig

    try:
        config = structure({"lr": parse_value(text)}, TrainConfig, "train")
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert math.isfinite(config.lr) and config.lr > 0


@PROPS
@given(text=st.text(max_size=25))
@example(text="0\x1f")  # str.strip drops "\x1f", int() refuses it: the number parsed is the stripped one
def test_cli_integers_are_ascii_and_in_range(text):
    try:
        value = cli_numbers.samples(text)
    except argparse.ArgumentTypeError as exc:
        assert "\n" not in str(exc)
    else:
        assert text.strip().lstrip("+-").isascii() and 1 <= value <= cli_numbers.MAX_SAMPLES


@PROPS
@given(value=st.integers(-(2**80), 2**80))
def test_cli_seeds_fit_64_bits(value):
    try:
        seed = cli_numbers.seed(str(value))
    except argparse.ArgumentTypeError:
        assert not 0 <= value <= cli_numbers.MAX_SEED
    else:
        assert seed == value


@PROPS
@given(text=st.one_of(st.text(max_size=20), st.floats().map(repr)))
@example(text="1.5\x1c")  # str.strip drops "\x1c", float() refuses it
def test_cli_floats_are_finite(text):
    try:
        value = cli_numbers.finite_float(text)
    except argparse.ArgumentTypeError:
        pass
    else:
        assert math.isfinite(value)
