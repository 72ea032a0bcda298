"""``genflow new-plugin`` end to end: the generated packages (an objective and a derivative provider)
install with ``pip install --no-deps --no-build-isolation -e`` into a fresh virtual environment, pass
their own tests as generated, train together, and show up in ``genflow derivatives``."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_third_party_plugin import FreshVenv, _ok, pytestmark  # noqa: F401  (slow, needs pip)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("new_plugin")
    venv = FreshVenv(root / "venv")
    for name, kind in (("myobj", "objective"), ("myfd", "derivative")):
        _ok(venv.genflow("new-plugin", name, "--kind", kind, "--dir", str(root / name), cwd=root))
        venv.pip("install", "-e", str(root / name))
    return venv, root


def test_the_generated_tests_pass_as_generated(generated):
    venv, root = generated
    out = _ok(venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "myobj" / "tests"),
                       str(root / "myfd" / "tests"), cwd=root))
    assert "4 passed" in out and "failed" not in out and "skipped" not in out, out


def test_genflow_contract_tests_cover_the_generated_components(generated):
    venv, root = generated
    from tests.e2e.test_third_party_plugin import REPO

    contract = REPO / "tests" / "contract" / "test_components.py"
    out = _ok(venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", f"{contract}::test_contract[objective:myobj]",
                       f"{contract}::test_contract[derivative:myfd]", cwd=root))
    assert "2 passed" in out, out


def test_the_generated_objective_trains_with_the_generated_derivative(generated, tmp_path):
    venv, _ = generated
    run = tmp_path / "run"
    out = _ok(venv.genflow("train", "--config", "debug", "--objective", "myobj", "--derivative", "myfd",
                           "--run-dir", str(run), "--no-progress", "train.steps=6", cwd=tmp_path))
    assert "trained 6 of 6 steps" in out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6 and rows[-1]["nonfinite"] == 0


def test_genflow_derivatives_lists_the_third_party_provider(generated, tmp_path):
    venv, _ = generated
    out = _ok(venv.genflow("derivatives", "--config", "debug", "--repeats", "1", "--warmup", "0",
                           "--json", str(tmp_path / "d.json"), cwd=tmp_path))
    rows = {row["provider"]: row for row in json.loads((tmp_path / "d.json").read_text())["rows"]}
    assert "myfd" in out and rows["myfd"]["order"] == 2
    assert rows["myfd"]["rel_err_dF"] < 0.05 and rows["myfd"]["ratio_fm"] > 0
