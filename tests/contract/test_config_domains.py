"""Every config field of every registered component (and of ``train``, ``sample`` and the sources of
``genflow prepare``) declares its domain, so a new key cannot skip the check at the door; values
outside it are one ConfigError line naming the dotted key."""

from __future__ import annotations

import typing

import attrs
import pytest

from genflow.config.convert import structure
from genflow.config.domains import domain_of, fields_without_domain, self_describing
from genflow.config.schema import SECTIONS
from genflow.data.prepare import SOURCES
from genflow.errors import ConfigError
from genflow.plugins import PluginManager

_MANAGER = PluginManager()
CLASSES: dict[str, type] = {f"{kind}:{name}": entry.component.config
                            for kind, table in _MANAGER.components.items() for name, entry in table.items()}
CLASSES.update({section: cls for section, cls in SECTIONS.items()})
CLASSES.update({f"prepare:{name}": config for name, (config, _) in SOURCES.items()})

#: Values a config file or override can hold that lie outside most numeric domains.
PROBES: tuple[object, ...] = (-1, 0, -0.5, 1.5, 10**19, float("inf"), float("nan"), [], [-1], [0.5, 0.2])


@pytest.mark.parametrize("where", sorted(CLASSES))
def test_every_field_declares_its_domain(where):
    missing = fields_without_domain(CLASSES[where])
    assert not missing, f"{where}: fields without a domain (add a genflow.config.domains validator): {missing}"


@pytest.mark.parametrize("where", sorted(CLASSES))
def test_the_defaults_lie_in_their_domains(where):
    CLASSES[where]()  # validators run on defaults too


def _probe_cases() -> list[tuple[str, str, object]]:
    cases = []
    for where, cls in sorted(CLASSES.items()):
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            if self_describing(hints[field.name]) or hints[field.name] is str:
                continue
            cases += [(where, field.name, value) for value in PROBES]
    return cases


@pytest.mark.parametrize(("where", "key", "value"), _probe_cases())
def test_values_outside_the_domain_are_one_line_naming_the_key(where, key, value):
    cls = CLASSES[where]
    domain = domain_of(attrs.fields_dict(cls)[key])
    try:
        structure({key: value}, cls, "slot")
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and f"slot.{key}" in message, message
    else:
        assert domain is not None and domain.check(tuple(value) if isinstance(value, list) else value), (
            f"{where}.{key} = {value!r} was accepted outside its domain")
