"""Third-party plugins for real: the MeanFlow example and the plugin guide's ``myobjective``, each installed
with ``pip`` into a fresh virtual environment and driven through the ``genflow`` command.

The fresh environment (offline, about a second): ``python -m venv --without-pip`` makes a real venv, and
one ``.pth`` file in it adds this interpreter's site-packages (genflow, torch, pip, setuptools, pytest)
*after* the venv's own, processing their ``.pth`` files too (so an editable genflow works). Plugins are
then installed into the venv itself by its ``python -m pip install --no-deps --no-build-isolation``
(nothing to download: the build backend and every dependency are already there) and removed by
``pip uninstall``; the environment running this test is never touched. ``genflow ...`` runs as
``<venv>/bin/python -m genflow ...`` (the ``genflow`` script of this environment would run with its
interpreter, which cannot see the venv's packages).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import pathlib
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from tests.unit.core.test_plugin_guide import GUIDE, guide_commands, guide_files

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "genflow-meanflow"
TIMEOUT = 600  # seconds per command: generous, for a loaded 2-core machine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None,
        reason="needs pip and setuptools in the test environment to install plugins offline",
    ),
]


class FreshVenv:
    """A new virtual environment that sees this interpreter's packages and installs into itself."""

    def __init__(self, root: pathlib.Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=TIMEOUT)
        self.root = root
        self.python = root / ("Scripts" if os.name == "nt" else "bin") / "python"
        purelib = self.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
        (pathlib.Path(purelib) / "_genflow_test_parent_env.pth").write_text(
            "".join(f"import site; site.addsitedir({path!r})\n" for path in self._parent_site_dirs())
        )

    @staticmethod
    def _parent_site_dirs() -> list[str]:
        dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
        if site.ENABLE_USER_SITE:
            dirs.append(site.getusersitepackages())
        return list(dict.fromkeys(d for d in dirs if os.path.isdir(d)))

    @staticmethod
    def env() -> dict[str, str]:
        """This process's environment, minus anything that would leak into or slow the subprocess."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.pop("GENFLOW_DISABLE_PLUGIN_AUTOLOAD", None)
        # pip never reaches an index; tiny models run fastest on one thread of the shared cores
        env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_CACHE_DIR="1",
                   OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
        return env

    def run(self, *args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
        """``<venv>/bin/python ARGS`` (not checked: callers assert on the exit status and output)."""
        return subprocess.run([str(self.python), *args], cwd=cwd, env=self.env(), capture_output=True, text=True,
                              timeout=TIMEOUT)

    def pip(self, *args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
        """``pip ARGS`` in the venv, checked; ``install`` gets ``--no-deps --no-build-isolation``."""
        if args[0] == "install":  # offline: nothing to resolve, nothing to download
            args = ("install", "--no-deps", "--no-build-isolation", *args[1:])
        result = self.run("-m", "pip", *args, cwd=cwd)
        assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def genflow(self, *args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
        """The ``genflow`` command, as the venv's ``python -m genflow ARGS``."""
        return self.run("-m", "genflow", *args, cwd=cwd)


def _copy_example(dest: pathlib.Path) -> pathlib.Path:
    """The example's source, without build leftovers (pip builds in the source folder)."""
    ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")
    return pathlib.Path(shutil.copytree(EXAMPLE, dest, ignore=ignore))


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _component_rows(plugins_output: str, kind: str) -> dict[str, str]:
    """``{component: plugin}`` of one kind's section of ``genflow plugins``."""
    section = plugins_output.split(f"\n{kind}s:\n", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0]: line.split()[1] for line in section.splitlines() if line.strip() != "(none)"}


# --------------------------------------------------------------------------------------------
# DoD 1: pip install ./examples/genflow-meanflow, then genflow plugins / genflow train
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def meanflow_venv(tmp_path_factory) -> FreshVenv:
    tmp = tmp_path_factory.mktemp("meanflow")
    venv = FreshVenv(tmp / "venv")
    venv.pip("install", str(_copy_example(tmp / "genflow-meanflow")))
    return venv


def test_genflow_plugins_lists_meanflow(meanflow_venv):
    result = meanflow_venv.genflow("plugins")
    out = _ok(result)
    assert "meanflow" in out.splitlines()[0].removeprefix("plugins: ").split(", ")
    assert _component_rows(out, "objective")["meanflow"] == "meanflow"
    assert _component_rows(out, "sampler")["meanflow"] == "meanflow"
    assert "warning" not in result.stderr


@pytest.mark.parametrize("derivative", ["dde", "jvp"])
def test_train_meanflow_on_toy2d(meanflow_venv, tmp_path, derivative):
    run = tmp_path / "run"
    out = _ok(meanflow_venv.genflow("train", "--config", "debug", "--objective", "meanflow", "--derivative", derivative,
                                    "--run-dir", str(run), "--no-progress", "train.steps=6", cwd=tmp_path))
    assert "genflow: trained 6 of 6 steps" in out
    config = (run / "config.toml").read_text()
    for slot, name in [("data", "toy2d"), ("objective", "meanflow"), ("derivative", derivative), ("sampler", "meanflow")]:
        assert f'[{slot}]\nname = "{name}"' in config, config  # the sampler follows the objective's defaults
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6 and math.isfinite(rows[-1]["loss"]) and rows[-1]["nonfinite"] == 0
    assert (run / "model.pt").is_file() and (run / "samples.png").is_file()


def test_contract_checks_run_over_the_installed_example(meanflow_venv, tmp_path):
    """genflow's contract tests over the example's components, and the example's own suite (which runs
    the same checks through the public ``genflow.testing``), against the installed distribution."""
    contract = REPO / "tests" / "contract" / "test_components.py"
    tests = _copy_example(tmp_path / "genflow-meanflow") / "tests"
    out = _ok(meanflow_venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests),
                                f"{contract}::test_contract[objective:meanflow]",
                                f"{contract}::test_contract[sampler:meanflow]", cwd=tmp_path))
    assert " passed" in out and "failed" not in out and "skipped" not in out, out


# --------------------------------------------------------------------------------------------
# DoD 3: a plugin that raises at import is reported by name; uninstalling leaves genflow working
# --------------------------------------------------------------------------------------------

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "genflow-broken"
version = "0.1.0"

[project.entry-points.genflow]
broken = "genflow_broken.at_import"
broken_hook = "genflow_broken.in_hook"
broken_spec = "genflow_broken.unknown_hook"
broken_type = "genflow_broken.wrong_type"

[tool.setuptools]
packages = ["genflow_broken"]
"""

BROKEN_MODULES = {
    "at_import.py": 'raise RuntimeError("genflow-broken fails at import")\n',
    "in_hook.py": (  # a lazy import of a dependency that is not installed
        "from genflow import hookimpl\n\n@hookimpl\ndef genflow_objectives():\n    import genflow_broken_missing_dep\n"
    ),
    "unknown_hook.py": "from genflow import hookimpl\n\n@hookimpl\ndef genflow_objectivs():\n    return []\n",  # a typo
    "wrong_type.py": "from genflow import hookimpl\n\n@hookimpl\ndef genflow_samplers():\n    return [{'name': 'x'}]\n",
}


def _broken_distribution(root: pathlib.Path) -> pathlib.Path:
    """A distribution of four broken plugins: one raises at import, one inside its registration hook, one
    implements a hook genflow does not define, one returns something other than components."""
    package = root / "genflow_broken"
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (package / "__init__.py").write_text("")
    for name, text in BROKEN_MODULES.items():
        (package / name).write_text(text)
    return root


def _installed_here(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_broken_plugins_are_reported_by_name_and_uninstalling_leaves_genflow_working(tmp_path):
    if _installed_here("genflow-meanflow"):
        pytest.skip("genflow-meanflow is installed in the test environment itself, which the fresh venv sees")
    venv = FreshVenv(tmp_path / "venv")
    venv.pip("install", str(_copy_example(tmp_path / "genflow-meanflow")), str(_broken_distribution(tmp_path / "b")))

    result = venv.genflow("plugins")
    out = _ok(result)
    assert ("genflow: warning: plugin 'broken' (genflow_broken.at_import) failed to import and was skipped: "
            "RuntimeError: genflow-broken fails at import (block it with -p no:broken)") in result.stderr
    assert ("genflow: warning: plugin 'broken_hook' failed in genflow_objectives and its components were skipped: "
            "ModuleNotFoundError: No module named 'genflow_broken_missing_dep'") in result.stderr
    assert ("genflow: warning: plugin 'broken_spec' (genflow_broken.unknown_hook) could not be registered and was "
            "skipped: PluginValidationError: unknown hook 'genflow_objectivs'") in result.stderr
    assert ("genflow: warning: plugin 'broken_type' returned something else from genflow_samplers; its components "
            "were skipped: TypeError: expected a list of genflow.registry.Component, got {'name': 'x'}") in result.stderr
    assert _component_rows(out, "objective")["meanflow"] == "meanflow"  # the others still load

    blocks = [arg for name in ("broken", "broken_hook", "broken_spec", "broken_type") for arg in ("-p", f"no:{name}")]
    blocked = venv.genflow(*blocks, "train", "--config", "debug", "--objective", "meanflow", "--dry-run")
    assert 'name = "meanflow"' in _ok(blocked) and "warning" not in blocked.stderr

    venv.pip("uninstall", "-y", "genflow-meanflow", "genflow-broken")
    result = venv.genflow("plugins")
    out = _ok(result)
    assert "meanflow" not in out and "warning" not in result.stderr
    assert _component_rows(out, "objective") == {"fm": "genflow_fm", "tim": "genflow_tim"}
    gone = venv.genflow("train", "--config", "debug", "--objective", "meanflow", "--dry-run")
    assert gone.returncode == 2 and "Traceback" not in gone.stderr
    assert "genflow: error: objective.name: unknown objective 'meanflow'; registered: fm, tim" in gone.stderr


# --------------------------------------------------------------------------------------------
# DoD 2: the guide's steps, followed literally in an empty folder
# --------------------------------------------------------------------------------------------


def _guide_step(venv: FreshVenv, command: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Run one command of the guide: ``pip``, ``genflow`` and ``python`` run in the fresh venv."""
    program, *args = shlex.split(command)
    if program == "pip":
        return venv.pip(*args, cwd=cwd)
    if program == "genflow":
        return venv.genflow(*args, cwd=cwd)
    if program == "python":
        return venv.run(*args, cwd=cwd)
    raise AssertionError(f"{GUIDE.name} runs '{program}', which this test does not know how to run: {command}")


def test_the_guide_followed_literally_makes_a_working_plugin(tmp_path):
    markdown = GUIDE.read_text(encoding="utf-8")
    folder = tmp_path / "empty"
    folder.mkdir()
    for relative, text in guide_files(markdown).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    venv = FreshVenv(tmp_path / "venv")
    outputs = {}
    for command in guide_commands(markdown):
        outputs[command] = _ok(_guide_step(venv, command, folder))
    listing = next(out for command, out in outputs.items() if command == "genflow plugins")
    assert _component_rows(listing, "objective")["myobjective"] == "myobjective"
    assert _component_rows(listing, "derivative")["myfd"] == "myobjective"
    trained = next(out for command, out in outputs.items() if command.startswith("genflow train"))
    assert "genflow: trained 20 of 20 steps" in trained
    tested = next(out for command, out in outputs.items() if "pytest" in command)
    assert " passed" in tested and "skipped" not in tested, textwrap.shorten(tested, 2000)
