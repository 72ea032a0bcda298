"""Fixtures of the evaluation tests: the default shapes classifier, trained once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shapes_classifier(tmp_path_factory):
    """The default classifier, trained into the session cache that every test's GENFLOW_CACHE names
    (so the end-to-end eval tests reuse it)."""
    from genflow.eval.classifier import ClassifierConfig, load_or_train

    return load_or_train(ClassifierConfig(), tmp_path_factory.getbasetemp() / "genflow-cache", progress=False)
