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
