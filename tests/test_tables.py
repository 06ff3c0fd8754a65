"""Tables and plot from stored records: statistics, paper rows kept apart, byte-identical
regeneration, clear errors."""

import json

import numpy as np
import pytest

from atm_bench.bench.results import ResultsStore
from atm_bench.cli import main
from atm_bench.errors import UserError
from atm_bench.tables import (comparison_rows, compute_rows, load_runs, per_seed_success, throughput_rows,
                              write_tables)


def _records(agent, suite, seed, successes):
    return [
        {"agent": agent, "suite": suite, "task": i % 2, "init_state": i, "seed": seed, "protocol": "atm",
         "preset": "smoke", "horizon": 600, "success": bool(s), "steps": 100, "seconds": 1.0}
        for i, s in enumerate(successes)
    ]


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    store = ResultsStore(run / "results.jsonl")
    store.extend(_records("atm", "libero_goal", 0, [1, 1, 0, 0]))   # 50 %
    store.extend(_records("atm", "libero_goal", 1, [1, 1, 1, 0]))   # 75 %
    store.extend(_records("bc", "libero_goal", 0, [0, 0, 0, 1]))    # 25 %
    with open(run / "results.jsonl", "a") as f:
        f.write('{"agent": "atm", "suite": "libero_go')  # a crash mid-line: reported and skipped
    (run / "flops.json").write_text(json.dumps({"atm": {"macs": 5e9, "flops": 1e10, "paper_convention_macs": 2.6e9},
                                                "bc": {"macs": 1e9, "flops": 2e9, "paper_convention_macs": 0.0},
                                                "plugged": {"macs": 1e6, "flops": 2e6}}))
    (run / "config.json").write_text(json.dumps({"preset": "smoke", "labelled": 10}))
    (run / "throughput.json").write_text(json.dumps({"serial_steps": 100, "agents": {
        "atm": {"serial": {"env_steps": 100, "seconds": 4.0, "steps_per_second": 25.0},
                "seeds": {"1": {"n_envs": 4, "episodes": 4, "env_steps": 400, "seconds": 5.0, "wall_seconds": 6.0,
                                "steps_per_second": 80.0},
                          "0": {"n_envs": 4, "episodes": 4, "env_steps": 400, "seconds": 4.0, "wall_seconds": 5.0,
                                "steps_per_second": 100.0}}},
        "bc": {"seeds": {"0": {"n_envs": 2, "episodes": 4, "env_steps": 300, "seconds": 3.0, "wall_seconds": 3.5,
                               "steps_per_second": 100.0}}}}}))
    return run


def test_success_is_mean_over_episodes_then_mean_std_over_seeds(run_dir):
    runs = load_runs([run_dir])
    records = runs[0].records
    assert per_seed_success(records)[("atm", "libero_goal")] == {0: 50.0, 1: 75.0}
    headers, rows = comparison_rows(records)
    assert headers[:3] == ["method", "source", "Goal"]
    ours = {r[0]: r for r in rows if r[1] == "ours"}
    assert ours["ATM"][2] == f"62.50 ± {np.std([50, 75]):.2f}" and ours["ATM"][-1] == "2"
    assert ours["BC"][2] == "25.00 ± 0.00"
    paper = {r[0]: r for r in rows if r[1] == "paper"}
    assert paper["ATM"][2] == "77.83 ± 0.82" and paper["BC"][2] == "42.50 ± 4.95"


def test_compute_uses_the_paper_convention_and_full_cost(run_dir):
    headers, rows = compute_rows(load_runs([run_dir]))
    atm = next(r for r in rows if r[0] == "ATM")
    assert atm[1] == f"{2.6e9 * 600 / 1e12:.3f}" and atm[2] == f"{1e10 * 600 / 1e12:.3f}" and atm[3] == "1.56"
    bc = next(r for r in rows if r[0] == "BC")
    assert bc[1] == "0.000" and bc[2] == f"{2e9 * 600 / 1e12:.3f}"  # no planner: 0 in the paper's convention
    plugged = next(r for r in rows if r[0] == "plugged")
    assert plugged[1] == "-" and plugged[2] == f"{2e6 * 600 / 1e12:.3f}"  # convention not reported: unknown


def test_throughput_rows_compare_the_vector_loop_with_the_serial_one(run_dir):
    headers, rows = throughput_rows(load_runs([run_dir]))
    assert headers[:2] == ["method", "seed"] and headers[5:8] == ["vector steps/s", "serial steps/s", "speed-up"]
    assert rows == [["BC", "0", "2", "4", "300", "100.0", "-", "-", "smoke"],  # no serial loop measured
                    ["ATM", "0", "4", "4", "400", "100.0", "25.0", "4.00x", "smoke"],
                    ["ATM", "1", "4", "4", "400", "80.0", "25.0", "3.20x", "smoke"]]
    (run_dir / "throughput.json").unlink()
    assert throughput_rows(load_runs([run_dir])) is None


def test_timing_rows_group_stages_by_agent_over_seeds(run_dir):
    from atm_bench.tables import timing_rows

    assert timing_rows(load_runs([run_dir])) is None  # no timing.json
    (run_dir / "timing.json").write_text(json.dumps({
        "data": 100.0, "stage1_track_model": 300.0, "train/bc/seed0": 50.0, "train/bc/seed1": 70.0,
        "train/atm/seed0": 80.0, "eval/atm/seed0": 200.0, "throughput/atm": 10.0, "tables": 0.5}))
    headers, rows = timing_rows(load_runs([run_dir]))
    assert headers == ["run", "stage", "seeds", "seconds", "hours", "share"]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("data", "", "100"), ("stage1_track_model", "", "300"), ("train BC", "2", "120"), ("train ATM", "1", "80"),
        ("eval ATM", "1", "200"), ("throughput ATM", "", "10"), ("total", "", "810")]  # the tables stage cannot time itself
    assert rows[0][5] == f"{100 * 100 / 810:.1f} %" and rows[-1][4] == f"{810 / 3600:.2f}"


def test_regeneration_is_byte_identical(run_dir, tmp_path):
    first = {p.name: p.read_bytes() for p in write_tables([run_dir], tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in write_tables([run_dir], tmp_path / "b")}
    assert first == second
    assert {"success.md", "success.csv", "success.tex", "compute.md", "throughput.md", "success.png"} <= set(first)
    assert b"77.83" in first["success.md"] and first["success.png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_name_the_directory(tmp_path, capsys):
    with pytest.raises(UserError, match="no episode records"):
        load_runs([tmp_path])
    assert main(["tables", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
