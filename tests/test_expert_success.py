"""`benchmarks/expert_success.py`: its report lists the default expert's suites and, as rows of
their own, those measured with another servo approach distance; a bad distance is one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "expert_success.py"


def _module():
    spec = importlib.util.spec_from_file_location("expert_success", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _store(path: Path, wins: list[int], episodes: int) -> None:
    tasks = {str(t): {"successes": w, "episodes": episodes, "success_rate": w / episodes} for t, w in enumerate(wins)}
    path.write_text(json.dumps({"tasks": tasks}))


def test_report_gives_other_servo_setups_their_own_rows(tmp_path):
    _store(tmp_path / "libero_goal.json", [5] * 10, 5)
    _store(tmp_path / "libero_goal-approach0.08.json", [5] * 9 + [2], 5)
    report = _module().report(tmp_path)
    assert "| libero_goal | 10 | 5 | 10/10 | 100.0 % (50/50) |" in report
    assert "| libero_goal-approach0.08 | 10 | 5 | 9/10 | 94.0 % (47/50) |" in report
    assert "| libero_goal-approach0.08 | 5/5 | 5/5 | 5/5 | 5/5 | 5/5 | 5/5 | 5/5 | 5/5 | 5/5 | 2/5 |" in report


def test_bad_approach_distance_is_one_line(capsys):
    assert _module().main(["--suite", "libero-goal", "--approach", "0"]) == 2
    assert "servo approach distance must be in (0, 0.5] m" in capsys.readouterr().err
