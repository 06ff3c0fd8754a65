"""`atm-bench compare`: per-task table, a verdict per agent, exit status 1 on a regression."""

import json
from pathlib import Path

import pytest

from atm_bench.bench.results import ResultsStore
from atm_bench.cli import main


def _run(path, rates, horizon=600):
    """A run directory: per agent, (successes, episodes) on each of tasks 0 and 1, split over seeds 0 and 1."""
    store = ResultsStore(path / "results.jsonl")
    for agent, (successes, episodes) in rates.items():
        for task in (0, 1):
            store.extend({"agent": agent, "suite": "libero_goal", "task": task, "init_state": i, "seed": i % 2,
                          "protocol": "atm", "preset": "smoke", "horizon": horizon, "success": i < successes,
                          "steps": 10, "seconds": 0.1} for i in range(episodes))
    return str(path)


@pytest.fixture
def runs(tmp_path):
    baseline = _run(tmp_path / "baseline", {"atm": (20, 25), "bc": (2, 25)})
    better = _run(tmp_path / "better", {"atm": (24, 25), "bc": (20, 25)})
    worse = _run(tmp_path / "worse", {"atm": (5, 25), "bc": (2, 25), "knn": (1, 25)})
    return baseline, better, worse


def test_an_improvement_exits_0_and_a_regression_exits_1(runs, capsys):
    baseline, better, worse = runs
    assert main(["compare", baseline, better]) == 0
    out = capsys.readouterr().out
    assert "verdict: improved" in out  # bc: 4/50 -> 40/50
    assert "40/50" in out and "4/50" in out and "p < 0.001" in out

    assert main(["compare", baseline, worse]) == 1
    out = capsys.readouterr().out
    assert "atm: A = baseline (seeds 0, 1), B = worse (seeds 0, 1)" in out and "verdict: regressed" in out  # atm: 40/50 -> 10/50
    assert "verdict: held" in out  # bc: 4/50 both times, the interval of B - A within +-20 points
    assert "knn" not in out  # only in one run: nothing to compare
    assert "different horizons" not in out


def test_runs_at_different_horizons_are_compared_with_a_note(runs, tmp_path, capsys):
    baseline = runs[0]
    capped = _run(tmp_path / "capped", {"atm": (20, 25)}, horizon=450)
    assert main(["compare", baseline, capped]) == 0
    assert "different horizons (baseline: [600], capped: [450])" in capsys.readouterr().out


def test_a_seed_still_being_evaluated_is_left_out_with_a_note(runs, tmp_path, capsys):
    baseline = runs[0]
    running = _run(tmp_path / "running", {"atm": (20, 25), "bc": (2, 25)})
    (Path(running) / "config.json").write_text(json.dumps({"episodes_per_task": 12, "tasks": [0, 1]}))  # 24 per seed
    ResultsStore(Path(running) / "results.jsonl").extend(  # seed 2 has begun: 1 of 24 episodes
        [{"agent": "bc", "suite": "libero_goal", "task": 0, "init_state": 0, "seed": 2, "protocol": "atm",
          "preset": "smoke", "horizon": 600, "success": True, "steps": 10, "seconds": 0.1}])
    assert main(["compare", baseline, running, "--agents", "bc"]) == 0
    out = capsys.readouterr().out
    assert "note: BC seed 2 on Goal in running is left out: still being evaluated (1 of 24 episodes recorded)." in out
    assert "| pooled  | shared | 4/50" in out and out.count("4/50") == 2  # seed 2's success not counted


def test_agents_option_selects_and_checks_names(runs, capsys):
    baseline, _, worse = runs
    assert main(["compare", baseline, worse, "--agents", "bc"]) == 0  # atm's regression not asked about
    assert "verdict: held" in capsys.readouterr().out
    assert main(["compare", baseline, worse, "--agents", "knn"]) == 2
    assert "knn not evaluated in both" in capsys.readouterr().err


def test_missing_or_empty_runs_are_one_clear_error(runs, tmp_path, capsys):
    baseline = runs[0]
    assert main(["compare", baseline, str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), baseline]) == 2
    assert "no episode records" in capsys.readouterr().err
    assert main(["compare", baseline, baseline, "--alpha", "5"]) == 2


def test_one_agent_against_another_in_one_run_or_across_two(runs, capsys):
    """`--agents bc:atm` compares run A's BC with run B's ATM: with both sides the same run it tests
    ATM against BC (the paper's claim); a name missing on its side is one clear error."""
    baseline, better, _ = runs
    assert main(["compare", baseline, baseline, "--agents", "bc:atm"]) == 0  # 4/50 -> 40/50
    out = capsys.readouterr().out
    assert "bc:atm: A = bc in baseline (seeds 0, 1), B = atm in baseline (seeds 0, 1)" in out and "verdict: improved" in out
    assert "| pooled  | shared | 4/50" in out and "40/50" in out
    assert main(["compare", baseline, baseline, "--agents", "atm:bc"]) == 1  # the reverse: a regression
    assert "verdict: regressed" in capsys.readouterr().out
    assert main(["compare", baseline, better, "--agents", "atm,bc:atm"]) == 0  # plain names mix with pairs
    out = capsys.readouterr().out
    assert "atm: A = baseline (seeds 0, 1), B = better (seeds 0, 1)" in out
    assert "bc:atm: A = bc in baseline (seeds 0, 1), B = atm in better (seeds 0, 1)" in out
    assert "pool different" not in out
    assert main(["compare", baseline, better, "--agents", "knn:atm"]) == 2
    assert "knn:atm not evaluated in both" in capsys.readouterr().err
    assert main(["compare", baseline, better, "--agents", "bc:atm:r3m"]) == 2
    assert "A_AGENT:B_AGENT" in capsys.readouterr().err


def test_seeds_option_compares_the_same_training_seeds_on_both_sides(tmp_path, capsys):
    """A run with BC at seed 0 only and ATM at seeds 0 and 1: `bc:atm` pools unequal sets of
    trainings, which the report names with the `--seeds` that compares equal ones."""
    store = ResultsStore(tmp_path / "lopsided" / "results.jsonl")
    for agent, seeds, successes in (("bc", (0,), 5), ("atm", (0, 1), 9)):
        store.extend({"agent": agent, "suite": "libero_goal", "task": 0, "init_state": i, "seed": seed,
                      "protocol": "atm", "preset": "smoke", "horizon": 600, "success": i < successes + 10 * seed,
                      "steps": 10, "seconds": 0.1} for seed in seeds for i in range(20))
    run = str(tmp_path / "lopsided")
    assert main(["compare", run, run, "--agents", "bc:atm"]) == 0
    out = capsys.readouterr().out
    assert "A = bc in lopsided (seeds 0), B = atm in lopsided (seeds 0, 1)" in out
    assert "note: A and B pool different training seeds; --seeds 0 compares the same ones" in out
    assert "| 5/20" in out and "28/40" in out  # atm: 9 of seed 0 + 19 of seed 1
    assert main(["compare", run, run, "--agents", "bc:atm", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "(seeds 0), B = atm in lopsided (seeds 0)" in out and "pool different" not in out
    assert "9/20" in out and "28/40" not in out
    assert main(["compare", run, run, "--seeds", "1"]) == 0  # bc has no seed-1 episode: atm alone
    out = capsys.readouterr().out
    assert out.startswith("atm: A = lopsided (seeds 1)") and "bc" not in out
    assert main(["compare", run, run, "--agents", "bc:atm", "--seeds", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no episode of those seeds" in err and "it has seeds 0" in err
    assert main(["compare", run, run, "--seeds", "zero"]) == 2
    assert "comma-separated integers" in capsys.readouterr().err
