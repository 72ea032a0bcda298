"""Untrusted inputs other than checkpoints (see tests/unit/train/test_untrusted_checkpoints.py): a
store is only read and training writes nowhere but its run folder; configs are TOML data and name
components, never Python modules; plugins come from built-ins and installed entry points only."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pathlib
import sys

import pytest

from genflow.cli import main
from genflow.plugins import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, PluginManager


def snapshot(root: pathlib.Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def points_store(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("store")
    assert main(["prepare", "--dataset", "toy2d", "--out", str(root / "points.zarr"), "--count", "256",
                 "--no-progress"]) == 0
    return root / "points.zarr"


@pytest.mark.parametrize("form", ["path", "file-url", "dotted"])
def test_training_from_a_store_writes_only_into_the_run_folder(tmp_path, points_store, form):
    url = {"path": str(points_store), "file-url": f"file://{points_store}",
           "dotted": str(points_store.parent / "." / ".." / points_store.parent.name / points_store.name)}[form]
    store_before, outside_before = snapshot(points_store), snapshot(tmp_path)
    cache = pathlib.Path(os.environ["GENFLOW_CACHE"])
    cache_before = snapshot(cache) if cache.is_dir() else {}
    assert main(["train", "--config", "debug", "--backbone", "mlp", "--data", url, "--run-dir",
                 str(tmp_path / "run"), "--no-progress", "train.steps=2", "train.batch_size=32"]) == 0
    assert snapshot(points_store) == store_before  # the store is read, never written
    changed = {k for k, v in snapshot(tmp_path).items() if outside_before.get(k) != v}
    assert changed and all(k == "run" or k.startswith("run/") for k in changed), changed
    assert (snapshot(cache) if cache.is_dir() else {}) == cache_before


@pytest.fixture
def importable_module(tmp_path, monkeypatch) -> tuple[str, pathlib.Path]:
    """A module on ``sys.path`` whose import creates a marker file."""
    marker = tmp_path / "imported"
    (tmp_path / "evilmodule.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "evilmodule", marker


def test_configs_name_components_never_modules(capsys, tmp_path, importable_module):
    name, marker = importable_module
    config = tmp_path / "config.toml"
    config.write_text(f'[backbone]\nname = "{name}"\n[train]\nsteps = "__import__(\'{name}\')"\n')
    for argv in (["config", "--objective", name], ["config", "--derivative", f"{name}:main"],
                 ["config", f'backbone.name="{name}.Backbone"'], ["config", "--config", str(config)],
                 ["config", "--data", name], ["plugins", "-p", name]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not marker.exists() and name not in sys.modules


def test_a_python_file_is_no_config(capsys, tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "config.py"
    script.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    assert main(["config", "--config", str(script)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err and not marker.exists()


def test_plugins_come_from_built_ins_and_installed_entry_points_only(monkeypatch):
    installed = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert set(PluginManager().plugin_names()) <= set(BUILTIN_PLUGINS) | installed
    monkeypatch.setenv("GENFLOW_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert set(PluginManager().plugin_names()) == set(BUILTIN_PLUGINS)
