"""``genflow derivatives``: one row per registered provider (and the run's own settings), with the error
against a float64 JVP, the step cost relative to flow matching and memory, as a table and JSON; bad
arguments fail with one line and exit code 2 before anything is written."""

from __future__ import annotations

import json

import pytest

from genflow.cli import main
from genflow.commands.derivative_report import relative_error
from genflow.plugins import PluginManager


def test_every_provider_gets_a_row_in_the_table_and_the_json(tmp_path, capsys):
    out_file = tmp_path / "report.json"
    assert main(["derivatives", "--config", "debug", "--batch", "16", "--repeats", "1", "--warmup", "0",
                 "--json", str(out_file)]) == 0
    printed = capsys.readouterr().out
    payload = json.loads(out_file.read_text())
    rows = {row["provider"]: row for row in payload["rows"]}
    # the debug preset runs tim with the one-sided dde: its settings get a row of their own
    expected = {*PluginManager().names("derivative"), "dde (stencil=one-sided)", "fm (baseline, no dF/dt)"}
    assert set(rows) == expected
    for name in expected:
        assert name in printed
    assert rows["jvp"]["rel_err_dF"] < 1e-5  # fp32 forward-mode AD against the float64 one
    assert rows["dde"]["order"] == 2 and rows["dde (stencil=one-sided)"]["order"] == 1
    assert 0 < rows["dde"]["rel_err_dF"] < 0.05 and 0 < rows["dde (stencil=one-sided)"]["rel_err_dF"] < 0.1
    assert rows["fm (baseline, no dF/dt)"]["ratio_fm"] == 1.0
    for row in rows.values():
        assert row["ratio_fm"] > 0 and row["step_s"] > 0 and row["saved_mib"] > 0
    assert payload["objective"] == "tim" and payload["batch"] == 16


def test_providers_can_be_chosen(capsys):
    assert main(["derivatives", "--config", "debug", "--providers", "jvp", "--batch", "8", "--repeats", "1",
                 "--warmup", "0"]) == 0
    printed = capsys.readouterr().out
    assert "jvp" in printed and "dde" not in printed.split("\n", 1)[1]


def test_a_trained_run_is_measured_with_its_own_config_and_weights(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "debug", "--run-dir", str(run), "--no-progress", "train.steps=2"]) == 0
    capsys.readouterr()
    assert main(["derivatives", "--run", str(run), "--providers", "dde", "--batch", "8", "--repeats", "1",
                 "--warmup", "0", "--json", str(tmp_path / "d.json")]) == 0
    assert f"run {run} (model.pt)" in capsys.readouterr().out
    rows = json.loads((tmp_path / "d.json").read_text())["rows"]
    assert [row["provider"] for row in rows] == ["dde", "dde (stencil=one-sided)", "fm (baseline, no dF/dt)"]
    assert main(["derivatives", "--run", str(run), "--config", "debug"]) == 2
    assert "--run takes the run's own config" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--providers", "nope"], "--providers: unknown derivative nope; registered:"),
    (["--repeats", "0"], "--repeats 0: must be an integer >= 1"),
    (["--batch", "-1"], "--batch -1: must be an integer >= 0"),
])
def test_bad_arguments_fail_with_one_line(argv, message, capsys):
    assert main(["derivatives", "--config", "debug", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_existing_json_file_is_not_overwritten(tmp_path, capsys):
    existing = tmp_path / "mine.json"
    existing.write_text("keep")
    assert main(["derivatives", "--config", "debug", "--json", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_text() == "keep"


def test_relative_error_is_the_ratio_of_norms():
    import torch

    reference = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert relative_error(reference + torch.tensor([0.3, 0.4], dtype=torch.float64), reference) == pytest.approx(0.1)
