"""`benchmarks/horizon_budget.py`: what a shorter evaluation horizon keeps and costs, from stored episodes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "horizon_budget.py"
spec = importlib.util.spec_from_file_location("horizon_budget", SCRIPT)
horizon_budget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(horizon_budget)


def _episodes(tmp_path: Path) -> Path:
    rows = [{"agent": "bc", "success": True, "steps": 100, "horizon": 600},
            {"agent": "bc", "success": True, "steps": 400, "horizon": 600},
            {"agent": "knn", "success": False, "steps": 600, "horizon": 600},
            {"agent": "knn", "success": False, "steps": 600, "horizon": 600}]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_shorter_horizon_cuts_failures_and_late_successes(tmp_path):
    episodes = horizon_budget.read_episodes([_episodes(tmp_path)])
    at300, at600 = horizon_budget.budget(episodes, [300, 600])
    ran = 100 + 400 + 600 + 600
    assert (at300["successes_kept"], at300["successes"]) == (1, 2)  # the 400-step success is lost
    assert at300["relative_env_steps"] == pytest.approx((100 + 300 + 300 + 300) / ran)
    assert at600["share_kept"] == 1.0 and at600["relative_env_steps"] == 1.0


def test_a_horizon_beyond_what_ran_is_refused_and_the_cli_prints_the_table(tmp_path, capsys):
    path = _episodes(tmp_path)
    with pytest.raises(ValueError, match="beyond what the episodes ran"):
        horizon_budget.budget(horizon_budget.read_episodes([path]), [700])
    assert horizon_budget.main([str(path), "--horizons", "300,450"]) == 0
    out = capsys.readouterr().out
    assert "4 episodes (bc, knn)" in out and "1/2" in out and "2/2" in out
