"""The cross-embodiment experiment (`benchmarks/cross_embodiment.py`) end to end at the smoke
preset: scripted UR5e demos and Panda videos with exact tracks, stage 1 on their mixture, ATM and
BC policies, closed-loop evaluation on the simulated UR5e, and the results JSON."""

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = [pytest.mark.sim, pytest.mark.slow]
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cross_embodiment.py"


def _script():
    spec = importlib.util.spec_from_file_location("cross_embodiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cross_embodiment_smoke_writes_results(tmp_path):
    results_path = tmp_path / "results" / "smoke.json"
    argv = ["--preset", "smoke", "--videos", "2", "--demos", "2", "--episodes", "2", "--horizon", "8",
            "--points", "24", "--out", str(tmp_path / "work"), "--results", str(results_path)]
    assert _script().main(argv) == 0
    r = json.loads(results_path.read_text())
    assert (r["preset"], r["panda_videos"], r["ur5e_demos"], r["eval_episodes"]) == ("smoke", 2, 2, 2)
    assert set(r["success"]) == {"atm", "bc"} and r["git_revision"] and r["wall_seconds_this_invocation"] > 0
    for name in ("atm", "bc"):
        agent = r["agents"][name]
        assert len(agent["records"]) == 2 and agent["success_rate"] == r["success"][name]
        assert all(1 <= rec["steps"] <= 8 for rec in agent["records"])
        assert agent["training"]["demos"] == 2
    # the same scenes for both agents
    assert [x["episode_seed"] for x in r["agents"]["atm"]["records"]] == \
        [x["episode_seed"] for x in r["agents"]["bc"]["records"]]
    assert {s["name"]: s["train_demos"] + s["val_demos"] for s in r["track_model"]["mixture"]} == {"panda": 2, "ur5e": 2}
    assert r["data"]["ur5e_demos"]["successes"] == 2 and r["data"]["panda_videos"]["kept"] == 2
    with h5py.File(r["data"]["panda_videos"]["file"], "r") as f:
        demo = f["data/demo_0"]
        assert "actions" not in demo and "states" not in demo and demo.attrs["action_free"]
        assert demo["obs/agentview_rgb"].shape[1:] == (32, 32, 3)
        assert set(demo["tracks"]) == {"agentview", "eye_in_hand"}
        assert demo["tracks/agentview/tracks"].shape[1] == 24 + 98
    with h5py.File(r["data"]["ur5e_demos"]["policy_file"], "r") as f:
        assert f["data"].attrs["action_space"] == "joint_step"
        actions = f["data/demo_0/actions"][()]
        assert actions.shape[1] == 7 and np.abs(actions).max() <= 1.0
        assert "tracks" in f["data/demo_0"]
    # A rerun reuses the data and training, and each stage's time sums both invocations.
    assert _script().main(argv) == 0
    again = json.loads(results_path.read_text())
    assert set(again["stage_seconds"]) == set(r["stage_seconds"])
    assert all(again["stage_seconds"][k] >= r["stage_seconds"][k] for k in r["stage_seconds"])
    assert again["stage_seconds"]["eval bc"] > r["stage_seconds"]["eval bc"]  # evaluated again, added up
    assert main_rejects_bad_input()


def main_rejects_bad_input():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(SCRIPT), "--out", "/nonexistent", "--demos", "1"],
                          capture_output=True, text=True)
    return done.returncode == 2 and "--demos must be >= 2" in done.stderr
