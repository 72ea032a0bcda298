"""Hook implementations of the ``genflow_tim`` plugin (registrations only)."""

from __future__ import annotations

from genflow.plugins import hookimpl
from genflow.registry import Component


@hookimpl
def genflow_objectives() -> list[Component]:
    return []


@hookimpl
def genflow_derivatives() -> list[Component]:
    return []


@hookimpl
def genflow_samplers() -> list[Component]:
    return []


@hookimpl
def genflow_paths() -> list[Component]:
    return []


@hookimpl
def genflow_backbones() -> list[Component]:
    return []
