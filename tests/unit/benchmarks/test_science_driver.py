"""The science driver's training arguments (benchmarks/science/run.py): baselines get their own
step counts, and ablation variants equal to the defaults share the default run."""

from __future__ import annotations

import pathlib
import sys

import pytest

SCIENCE = pathlib.Path(__file__).resolve().parents[3] / "benchmarks" / "science"


@pytest.fixture(scope="module")
def run_module():
    sys.path.insert(0, str(SCIENCE))
    try:
        import run  # noqa: PLC0415  (benchmarks/science/run.py, not a package)

        yield run
    finally:
        sys.path.remove(str(SCIENCE))


def _overrides(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv if "=" in a)


def test_same_compute_baseline_keeps_its_own_steps(run_module):
    fm = run_module.toy_steps(3000)[-1]
    args = _overrides(fm.train_argv(seed=1, steps=3000))
    assert args["train.steps"] == str(round(run_module.FM_COMPUTE * 3000))
    assert args["train.seed"] == "1"
    assert _overrides(run_module.toy_steps(3000)[0].train_argv(seed=0, steps=3000))["train.steps"] == "3000"


def test_default_valued_ablations_share_the_default_run(run_module):
    default = run_module.toy_steps(3000)[0].train_argv(seed=0, steps=3000)
    tangent = next(v for v in run_module.weighting(3000) if v.name == "tangent")
    assert tangent.train_argv(seed=0, steps=3000) == default
    mixtures = [v.train_argv(seed=0, steps=3000) for v in run_module.mixture(3000)]
    assert mixtures.count(default) == 1
    assert len({tuple(m) for m in mixtures}) == 9


def test_paired_differences_cancel_the_seed(run_module):
    from common import summarize_paired  # noqa: PLC0415  (benchmarks/science/common.py)

    def row(variant: str, seed: int, value: float) -> dict:
        return {"variant": variant, "seed": seed, "metrics": {"w": {"1": value}}}

    # the seed shifts both variants by the same amount: raw spread 1.0, paired spread 0
    runs = [row("a", s, 1.0 * s) for s in range(3)] + [row("b", s, 1.0 * s + 0.25) for s in range(3)]
    runs.append(row("b", 7, 9.0))  # no baseline run on seed 7: left out
    paired = summarize_paired({"runs": dict(enumerate(runs))}, "w", ["a", "b"], baseline="a")
    assert list(paired) == ["b"]
    mean, std, n = paired["b"]["1"]
    assert (round(mean, 12), round(std, 12), n) == (0.25, 0.0, 3)


def test_a_run_trained_under_other_defaults_is_not_reused(run_module, tmp_path, monkeypatch):
    """The cache is keyed by the arguments, but a finished run counts only while its config still
    resolves to what the arguments resolve to now (a default may have changed since)."""
    common = sys.modules["common"]
    def resolved_config(*argv):  # the arguments resolve to "now"; a run's config.toml to the file "then"
        return "now" if argv == ("--config", "toy2d") else (tmp_path / "then").read_text()

    monkeypatch.setattr(common, "resolved_config", resolved_config)
    trained = []

    def fake_genflow(*argv, log):
        run = pathlib.Path(argv[argv.index("--run-dir") + 1])
        run.mkdir(parents=True)
        trained.append(run.name)

    monkeypatch.setattr(common, "genflow", fake_genflow)
    argv = ["--config", "toy2d"]
    first, _ = common.train(argv, tmp_path)
    (tmp_path / "then").write_text("now")  # its config.toml resolves as the arguments do: reused
    assert common.train(argv, tmp_path)[0] == first and trained == [first.name]
    (tmp_path / "then").write_text("old defaults")  # the defaults moved since it was trained
    second, _ = common.train(argv, tmp_path)
    assert second != first and trained == [first.name, second.name]
    assert common.train(argv, tmp_path)[0] == second  # the new run is reused in turn
