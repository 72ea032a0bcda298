"""``benchmarks/gpu_suite.py --tiny``: every section of the GPU suite runs on CPU (debug preset) and
writes its JSON, so the one GPU call a session gets does not fail on a Python error."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

SUITE = pathlib.Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_suite.py"


@pytest.mark.slow
def test_every_section_runs_on_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(SUITE), "--tiny", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=3600,  # a hang guard, not a time budget
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_suite_tiny.json").read_text())
    sections = result["sections"]
    failed = {name: s.get("error", s["status"]) for name, s in sections.items() if s["status"] != "ok"}
    assert not failed
    assert len(sections) == 15
    assert sections["loop debug b8 shapes"]["result"]["graphs_compiled"] > 0  # the loop ran compiled
    costs = sections["fixed costs debug"]["result"]
    assert costs["ema_ms"] > 0 and costs["clip_and_adamw_ms"] > 0
    rows = sections["train debug b4 compiled+reduce-overhead"]["result"]
    assert [r["mode"] for r in rows] == ["dde", "fm", "dde1", "dde-0.7", "dde1-0.7"]
    assert all(r["it_per_s"] > 0 and r["step_tflop"] > 0 for r in rows)
    assert {r["mode"] for r in result["summary"]["best"]} >= {"dde", "dde-0.7", "fm"}
