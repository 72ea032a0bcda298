"""End-to-end: ``genflow eval`` on a toy2d and a shapes run; its one-line errors (exit code 2)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from genflow.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _train(run_dir, *argv: str) -> None:
    assert main(["train", "--run-dir", str(run_dir), "--no-progress", *argv]) == 0


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """The session cache of tests/conftest.py, for module-scoped fixtures that prepare data."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENFLOW_CACHE", str(tmp_path_factory.getbasetemp() / "genflow-cache"))
        yield


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, cache_env):
    run = tmp_path_factory.mktemp("eval") / "toy"
    _train(run, "--config", "debug", "train.steps=10")
    return run


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory, cache_env):
    run = tmp_path_factory.mktemp("eval") / "shapes"
    _train(run, "--config", "demo", "data.count=64", "train.steps=2", "train.batch_size=4", "train.checkpoint_every=0",
           "train.sample_every=0", "train.log_every=1", "sample.num=4", "sample.steps=[1]")
    return run


def test_eval_toy_run_writes_table_plots_and_grids(capsys, tmp_path, toy_run):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "eval", str(toy_run), "--steps", "1,2,4", "--num", "256", "--out", str(out),
                                "--no-progress")
    assert code == 0, err
    doc = json.loads((out / "eval.json").read_text())
    assert doc["settings"]["steps"] == [1, 2, 4] and doc["settings"]["num"] == 256 and doc["settings"]["seed"] == 0
    (run,) = doc["runs"]
    assert run["weights"] == "model.pt" and run["checkpoint"] is None and run["sampler"]["name"] == "transition"
    assert run["guidance"] == 1.0 and run["num"] == 256 and run["seed"] == 0
    assert {(r["metric"], r["steps"]) for r in doc["rows"]} == {
        (m, k) for m in ("sliced_wasserstein", "transition_error") for k in (1, 2, 4)}
    assert all(math.isfinite(r["value"]) and r["sampler"] == "transition" for r in doc["rows"])
    for name in ("eval_sliced_wasserstein.png", "eval_transition_error.png", "samples_1steps.png", "samples_4steps.png"):
        assert (out / name).is_file(), name
    assert "steps  sliced_wasserstein v  transition_error v" in stdout


def test_eval_a_checkpoint_and_compare_two_runs(capsys, tmp_path, toy_run):
    out = tmp_path / "out"  # the same folder twice stands in for TiM vs FM: labels are made distinct
    code, stdout, err = run_cli(capsys, "eval", str(toy_run), "--compare", str(toy_run), "--checkpoint", "10",
                                "--steps", "1,2", "--num", "128", "--metrics", "transition_error", "--out", str(out),
                                "--no-progress")
    assert code == 0, err
    doc = json.loads((out / "eval.json").read_text())
    assert [r["label"] for r in doc["runs"]] == ["toy", "toy-1"]
    assert all(r["weights"] == "checkpoints/step_00000010 (EMA)" and r["checkpoint"] == 10 for r in doc["runs"])
    assert {r["run"] for r in doc["rows"]} == {"toy", "toy-1"} and len(doc["rows"]) == 4
    first, second = ([r["value"] for r in doc["rows"] if r["run"] == label] for label in ("toy", "toy-1"))
    assert first == second  # fixed seeds: the same run scores the same
    assert (out / "eval_transition_error.png").is_file()
    assert (out / "toy" / "samples_2steps.png").is_file() and (out / "toy-1" / "samples_1steps.png").is_file()


def test_every_step_count_sees_the_same_noise_and_conditions(manager, toy_run):
    from genflow.eval.sweep import SweepSettings, evaluate
    from genflow.interfaces import EvalContext, EvalSamples, Metric
    from genflow.sampling.driver import fixed_noise
    from genflow.sampling.runs import load_run

    seen: list[EvalSamples] = []

    class Spy(Metric):
        def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
            seen.append(batch)
            return float(batch.steps)

    run = load_run(toy_run, manager)
    settings = SweepSettings(steps=(1, 3), num=64, seed=5)
    results = evaluate(run, {"spy": Spy()}, settings, progress=False)
    assert [r.values["spy"] for r in results] == [1.0, 3.0]
    expected = fixed_noise(run.components.spec, 64, 5, torch.device("cpu"))
    assert all(torch.equal(b.noise, expected) for b in seen)
    assert not torch.equal(seen[0].samples, seen[1].samples)


def test_eval_shapes_run(capsys, tmp_path, shapes_run):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "eval", str(shapes_run), "--steps", "1,2", "--num", "32", "--out", str(out),
                                "--no-progress", "--metric-option", "fd_shapes.reference=512")
    assert code == 0, err
    doc = json.loads((out / "eval.json").read_text())
    assert list(doc["metrics"]) == ["fd_shapes", "precision_shapes", "recall_shapes", "class_accuracy",
                                    "shape_accuracy", "colour_accuracy"]
    assert doc["metrics"]["fd_shapes"]["config"]["reference"] == 512
    provenance = doc["runs"][0]["metric_provenance"]["fd_shapes"]
    assert len(provenance["sha256"]) == 64 and provenance["held_out_accuracy"] >= 0.98
    assert all(r["value"] is not None and r["value"] >= 0 for r in doc["rows"])
    assert (out / "samples_2steps.png").is_file() and (out / "eval_class_accuracy.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0,-1,abc"], "--steps '0,-1,abc': expected positive integers separated by commas"),
        (["--metrics", "nope"], "--metrics: unknown metric 'nope'; registered: class_accuracy"),
        (["--metrics", "fd_shapes"], "metric 'fd_shapes' applies to the shapes dataset only"),
        (["--metric-option", "transition_error.bogus=1"], "unknown key transition_error.bogus"),
        (["--metric-option", "nope.x=1"], "--metric-option 'nope.x': unknown metric 'nope'"),
        (["--num", "1"], "--num 1: metrics need at least 2 samples"),
        (["--checkpoint", "7"], "has no checkpoint at step 7"),
    ],
)
def test_bad_input_on_a_toy_run_is_one_line(capsys, toy_run, args, message):
    code, _, err = run_cli(capsys, "eval", str(toy_run), "--no-progress", *args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics", "fid_inception"], "metric 'fid_inception' needs local weights of Inception-v3"),
        (["--metrics", "fd_dinov2", "--metric-option", "fd_dinov2.weights=/nonexistent/dino.pt2"],
         "weights file '/nonexistent/dino.pt2' does not exist"),
    ],
)
def test_missing_feature_network_weights_are_one_line(capsys, shapes_run, args, message):
    code, _, err = run_cli(capsys, "eval", str(shapes_run), "--no-progress", *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_run_folder_without_weights_is_one_line(capsys, tmp_path, toy_run):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(toy_run / "config.toml", bare / "config.toml")
    code, _, err = run_cli(capsys, "eval", str(bare), "--no-progress")
    assert code == 2 and "has no checkpoint (checkpoints: none; final weights model.pt: no)" in err
    assert err.count("\n") == 1
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "absent"))
    assert code == 2 and "is not a genflow run folder" in err
