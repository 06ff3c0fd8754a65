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


E2E_SCRIPT = SCRIPT.with_name("gpu_e2e_check.py")


def test_gpu_e2e_check_trains_through_the_cli_and_compares_devices(tmp_path):
    from atm_bench.data.generate import GenerateConfig, generate
    from atm_bench.data.splits import make_split, save_split

    root = tmp_path / "data"  # what benchmarks/gpu_check_prepare.sh makes, at one task and two demos
    generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=2, image_size=32, max_attempts=4, tracks="sim",
                            track_points=64), root, progress=False)
    split = tmp_path / "split.json"
    save_split(make_split(root, "libero_goal", labelled=1, val_fraction=0.5, tasks=[1]), split)
    spec = importlib.util.spec_from_file_location("gpu_e2e_check", E2E_SCRIPT)
    e2e = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e2e)
    out = tmp_path / "e2e.json"
    assert e2e.main(["--device", "cpu", "--data-dir", str(root), "--split", str(split), "--act-steps", "3",
                     "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for stage in ("track_model", "atm_policy", "bc_policy"):
        assert result["training"][stage]["exit_code"] == 0 and len(result["training"][stage]["train_loss_by_epoch"]) == 2
    for agent in ("atm", "bc"):  # CPU against CPU: the same actions
        acting = result["acting"][agent]
        assert (acting["steps"], acting["max_abs_action_diff"], acting["agrees"]) == (3, 0.0, True)
    assert result["ok"] and (tmp_path / "e2e" / "atm" / "policy" / "model.safetensors").is_file()
