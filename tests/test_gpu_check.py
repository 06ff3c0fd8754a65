"""`benchmarks/gpu_check.py`, the device check a session with a GPU runs once, run here on the CPU at
the smoke preset so that it works the day a GPU is lent."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.sim

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_measures_both_stages_both_precisions_and_the_evaluation(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--device", "cpu", "--preset", "smoke", "--seconds", "0.2", "--envs", "2",
                           "--eval-steps", "8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["preset"] == "smoke"
    for key in ("stage1_bf16", "stage1_fp32", "stage2_bf16", "stage2_fp32"):
        assert result[key]["samples_per_second"] > 0 and result[key]["steps"] >= 2, key
    assert result["stage1_bf16_speedup"] > 0 and result["stage2_bf16_speedup"] > 0
    evaluation = result["evaluation"]
    assert evaluation["envs"] == 2 and evaluation["env_steps"] >= 8 and evaluation["env_steps_per_second"] > 0
    projection = result["projection"]
    assert projection["total_hours"] > 0 and projection["assumptions"]["seeds"] == 3
