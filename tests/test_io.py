"""Foundations: small JSON files written atomically and read back, and a corrupt one named in one line."""

from __future__ import annotations

import json

import pytest

from atm_bench.errors import UserError
from atm_bench.io import JsonFile, read_json, write_json_atomic


def test_a_json_file_round_trips_and_an_edit_that_fails_changes_nothing(tmp_path):
    store = JsonFile(tmp_path / "stages.json")
    assert store.read() == {}  # missing: empty
    with store.edit() as data:
        data["data"] = "key-1"
    assert read_json(tmp_path / "stages.json") == {"data": "key-1"}
    with pytest.raises(RuntimeError):
        with store.edit() as data:
            data["tracks"] = "key-2"
            raise RuntimeError("the stage failed")
    assert store.read() == {"data": "key-1"}
    assert [p.name for p in tmp_path.iterdir()] == ["stages.json"]  # no temporary file left behind


def test_a_corrupt_json_file_is_named_in_one_line(tmp_path, capsys):
    from atm_bench.cli import main

    path = tmp_path / "run" / "config.json"
    write_json_atomic(path, {"suite": "libero_goal"})
    path.write_text(path.read_text()[:-3])  # a hand edit gone wrong
    with pytest.raises(UserError, match=r"config.json: corrupt JSON \(.*\); restore it, or remove it"):
        read_json(path)
    with pytest.raises(UserError, match="corrupt JSON"):
        JsonFile(path).read()
    record = {"agent": "bc", "suite": "libero_goal", "task": 0, "init_state": 0, "seed": 0, "protocol": "atm",
              "preset": "smoke", "horizon": 20, "success": False, "steps": 20, "seconds": 1.0}
    (tmp_path / "run" / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert main(["tables", str(tmp_path / "run"), "--out", str(tmp_path / "tables")]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt JSON" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_locked_directory_refuses_a_second_holder_in_one_line_and_frees_on_exit(tmp_path):
    from atm_bench.io import exclusive

    lock = tmp_path / "run" / "run.lock"
    with exclusive(lock, "run directory run"):
        with pytest.raises(UserError, match=r"run directory run is in use by pid \d+ on .*: wait for it or stop it"):
            with exclusive(lock, "run directory run"):
                pass  # never reached: a second open file description of the same file conflicts
    with exclusive(lock, "run directory run"):  # released when the holder's block ends
        pass


def test_a_second_run_on_a_run_directory_in_use_is_refused(tmp_path, capsys):
    from atm_bench.bench.runner import RUN_LOCK
    from atm_bench.cli import main
    from atm_bench.io import exclusive

    out = tmp_path / "run"
    with exclusive(out / RUN_LOCK, "run directory"):  # as a driver still running would hold it
        assert main(["run", "--suite", "libero-goal", "--preset", "smoke", "--out", str(out),
                     "--data-dir", str(tmp_path / "data")]) == 2
    assert f"run directory {out} is in use by pid" in capsys.readouterr().err
    assert not (out / "results.jsonl").exists()


def test_a_second_eval_on_a_directory_in_use_is_refused(tmp_path, capsys):
    """Two evaluations of one agent-seed in one directory would both run its missing episodes and
    race on config.json's merge: the second stops before it builds the agent."""
    from atm_bench.bench.runner import RUN_LOCK
    from atm_bench.cli import main
    from atm_bench.io import exclusive

    out = tmp_path / "eval"
    with exclusive(out / RUN_LOCK, "evaluation directory"):
        assert main(["eval", "--agent", "expert", "--suite", "libero-goal", "--tasks", "0", "--episodes", "1",
                     "--out", str(out)]) == 2
    assert f"evaluation directory {out} is in use by pid" in capsys.readouterr().err
    assert not (out / "results.jsonl").exists() and not (out / "config.json").exists()
