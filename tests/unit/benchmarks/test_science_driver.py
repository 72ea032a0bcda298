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



def test_experimental_options_are_dotted_and_shared_when_default(run_module):
    rows = run_module.velocity_rows(run_module.TOY)(3000)[1]
    assert _overrides(rows.train_argv(seed=0, steps=3000))["objective.experimental.diagonal_groups"] == "1"
    default = run_module._tim_variant("same", run_module.TOY, {"experimental.diagonal_groups": 0})
    assert default.train_argv(seed=0, steps=3000) == run_module.toy_steps(3000)[0].train_argv(seed=0, steps=3000)


def test_config_keys_counts_nested_tables_and_unnamed_preset_tables():
    sys.path.insert(0, str(SCIENCE.parent))
    try:
        import config_keys  # noqa: PLC0415  (benchmarks/config_keys.py, not a package)
    finally:
        sys.path.remove(str(SCIENCE.parent))
    from genflow.plugins import PluginManager

    schema = config_keys.schema_keys(PluginManager())
    assert ("objective", "tim", "experimental", "diagonal_groups") in schema
    assert ("objective", "tim", "experimental") not in schema
    assert ("train", "", "lr") in schema
    presets = {("objective", "", "adaptive"), ("train", "", "lr")}
    unset = config_keys.unset_keys({("objective", "tim", "adaptive"), ("objective", "fm", "p_std"),
                                    ("train", "", "lr")}, presets)
    assert unset == [("objective", "fm", "p_std")]

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


@pytest.fixture()
def fake_cli(run_module, tmp_path, monkeypatch):
    """``genflow config`` resolves arguments through ``resolves`` (what the code's defaults make of
    them now) and a run folder through its config.toml; ``genflow train`` writes that config.toml."""
    common = sys.modules["common"]
    resolves: dict[tuple[str, ...], str] = {}
    trained: list[str] = []

    def resolved_config(*argv):
        if argv[1].endswith("config.toml"):
            return pathlib.Path(argv[1]).read_text()
        return resolves[argv]

    def genflow(*argv, log):
        run = pathlib.Path(argv[argv.index("--run-dir") + 1])
        run.mkdir(parents=True)
        (run / "config.toml").write_text(resolves[tuple(argv[argv.index("--no-progress") + 1:])])
        trained.append(run.name)

    monkeypatch.setattr(common, "resolved_config", resolved_config)
    monkeypatch.setattr(common, "genflow", genflow)
    return common, resolves, trained


def test_a_run_trained_under_other_defaults_is_not_reused(fake_cli, tmp_path):
    """A finished run counts only while its config is what the arguments resolve to now (a default
    may have changed since); the new run is reused in turn, also by a driver started later."""
    common, resolves, trained = fake_cli
    argv = ("--config", "toy2d")
    resolves[argv] = "ratio 0.5"
    first, _ = common.train(argv, tmp_path, common.RunIndex(tmp_path))
    assert common.train(argv, tmp_path, common.RunIndex(tmp_path))[0] == first and trained == [first.name]
    resolves[argv] = "ratio 0.7"  # the default moved since it was trained
    second, _ = common.train(argv, tmp_path, common.RunIndex(tmp_path))
    assert second != first and trained == [first.name, second.name]
    assert common.train(argv, tmp_path, common.RunIndex(tmp_path))[0] == second


def test_arguments_that_resolve_alike_share_one_run(fake_cli, tmp_path):
    """An explicit option equal to today's default trains nothing new, and runs made before the
    index existed are found by their config.toml."""
    common, resolves, trained = fake_cli
    explicit, default = ("--config", "toy2d", "objective.diffusion_ratio=0.5"), ("--config", "toy2d")
    resolves[explicit] = resolves[default] = "ratio 0.5"
    run, _ = common.train(explicit, tmp_path, common.RunIndex(tmp_path))
    (tmp_path / "index.json").unlink()  # as before the index existed
    assert common.train(default, tmp_path, common.RunIndex(tmp_path))[0] == run and trained == [run.name]


def test_runs_are_evaluated_on_the_ema_of_their_last_checkpoint(fake_cli, tmp_path, monkeypatch):
    """Not ``model.pt`` (raw weights in CPU runs made before 2026-11-27): ``--checkpoint LAST``."""
    common, _, _ = fake_cli
    run = tmp_path / "run"
    for name in ("step_00000500", "step_00001000", "step_00001500.tmp"):
        (run / "checkpoints" / name).mkdir(parents=True)
    calls = []

    def genflow(*argv, log):
        calls.append(argv)
        out = pathlib.Path(argv[argv.index("--out") + 1])
        out.mkdir()
        (out / "eval.json").write_text('{"rows": [{"metric": "w", "steps": 4, "value": 0.5}]}')

    monkeypatch.setattr(common, "genflow", genflow)
    assert common.evaluate(run, [4], ["--num", "9"]) == {"w": {"4": 0.5}}
    assert calls[0][calls[0].index("--checkpoint") + 1] == "1000"
    common.evaluate(run, [4], ["--num", "9"])  # cached
    assert len(calls) == 1
