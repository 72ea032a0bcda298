"""Fixtures of the data tests."""

from __future__ import annotations

import uuid

import pytest

from .helpers import write_shapes


@pytest.fixture
def memory_url() -> str:
    return f"memory://genflow-test-{uuid.uuid4().hex}.zarr"


@pytest.fixture
def shapes_store(tmp_path):
    """A local store of 150 single-object 16x16 shapes in chunks of 32, and its source."""
    url = str(tmp_path / "shapes.zarr")
    return url, write_shapes(url)
