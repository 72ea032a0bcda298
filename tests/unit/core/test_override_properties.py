"""Property-based tests (hypothesis) of dotted overrides ``a.b.c=VALUE``: the value is a TOML literal
(or else the bare text), it round-trips, keys split on dots, later overrides win, malformed keys fail
with a ``ConfigError``, and nothing the parser returns is anything but TOML data."""

from __future__ import annotations

import copy
import datetime
import math

import pytest
import tomli_w
import tomllib
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from genflow.config.load import merge_raw, parse_override, parse_value
from genflow.config.schema import SECTIONS, SLOTS
from genflow.errors import ConfigError

PROPS = settings(max_examples=100, deadline=None)

scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=10)
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=8)
dotted = st.lists(keys, min_size=1, max_size=4)
TOML_TYPES = (str, int, float, bool, list, dict, datetime.datetime, datetime.date, datetime.time)


def literal(value: object) -> str:
    """``value`` written as a one-line TOML literal (the right-hand side of ``v = ...``)."""
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    text = tomli_w.dumps({"v": value})
    assert text.startswith("v = ") and text.endswith("\n") and text.count("\n") == 1, text
    return text[len("v = "):-1]


def same(a: object, b: object) -> bool:
    """Equality that also tells ``1`` from ``1.0`` / ``True`` and ``0.0`` from ``-0.0``."""
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return isinstance(b, float) and a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def toml_data_only(value: object) -> bool:
    if isinstance(value, list):
        return all(toml_data_only(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and toml_data_only(v) for k, v in value.items())
    return isinstance(value, TOML_TYPES)


@PROPS
@given(value=values)
def test_a_toml_literal_round_trips(value):
    assert same(parse_value(literal(value)), value)


@PROPS
@given(path=dotted, value=values, pad=st.sampled_from(["", " ", "  "]))
def test_an_override_splits_its_key_on_dots_and_keeps_its_value(path, value, pad):
    keys_out, parsed = parse_override(f"{pad}{'.'.join(path)}{pad}={pad}{literal(value)}{pad}")
    assert keys_out == path and same(parsed, value)


@PROPS
@given(text=st.text(max_size=30))
def test_anything_else_stays_the_bare_text(text):
    """Whatever the text, the result is TOML data: the literal's value, or the text itself."""
    result = parse_value(text)
    assert toml_data_only(result)
    try:
        expected = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        assert result == text
    else:
        assert same(result, expected)


@PROPS
@given(text=st.text(alphabet=st.characters(blacklist_characters="\"'[{\n\r#=", blacklist_categories=("Cs",)),
                    min_size=1, max_size=20))
def test_a_word_that_is_no_literal_is_a_string(text):
    """``train.precision=fp8`` gives the string ``fp8`` (and the schema names what is allowed)."""
    text = text.strip()
    assume(text)
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        assert parse_value(text) == text


@PROPS
@given(path=dotted, value=st.text(max_size=10))
def test_an_equals_sign_in_the_value_stays_in_the_value(path, value):
    keys_out, parsed = parse_override(f"{'.'.join(path)}={literal('=' + value)}")
    assert keys_out == path and parsed == "=" + value


@PROPS
@given(path=dotted, hole=st.integers(0, 4), blank=st.sampled_from(["", " ", "\t"]), value=scalars)
def test_an_empty_key_part_is_an_error(path, hole, blank, value):
    parts = list(path)
    parts.insert(min(hole, len(parts)), blank)
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override(f"{'.'.join(parts)}={literal(value)}")


@PROPS
@given(text=st.text(alphabet=st.characters(blacklist_characters="=", blacklist_categories=("Cs",)), max_size=20))
def test_an_override_without_equals_is_an_error(text):
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override(text)


@PROPS
@given(items=st.lists(st.tuples(st.sampled_from(["train", "sample", "objective"]), keys, values), max_size=8),
       file_data=st.dictionaries(st.sampled_from(["train", "sample"]),
                                 st.dictionaries(keys, scalars, max_size=3), max_size=2))
def test_overrides_apply_in_order_and_the_last_one_wins(items, file_data):
    frozen = copy.deepcopy(file_data)
    raw = merge_raw(file_data, {}, [f"{section}.{key}={literal(value)}" for section, key, value in items])
    assert file_data == frozen  # the file's data is not modified
    expected = copy.deepcopy(file_data)
    for section, key, value in items:
        expected.setdefault(section, {})[key] = value
    assert raw.keys() == expected.keys()
    for section, table in expected.items():
        assert raw[section].keys() == table.keys()
        assert all(same(raw[section][k], v) for k, v in table.items())


@PROPS
@given(key=keys, value=scalars, deeper=keys)
def test_an_override_through_a_value_is_an_error(key, value, deeper):
    with pytest.raises(ConfigError, match=f"train.{key} is not a table"):
        merge_raw({}, {}, [f"train.{key}={literal(value)}", f"train.{key}.{deeper}=1"])


@PROPS
@given(section=keys, key=keys, value=scalars)
def test_an_unknown_section_is_an_error(section, key, value):
    assume(section not in {*SLOTS, *SECTIONS})
    with pytest.raises(ConfigError, match=f"unknown config section '{section}'"):
        merge_raw({}, {}, [f"{section}.{key}={literal(value)}"])
