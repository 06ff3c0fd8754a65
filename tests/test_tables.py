"""Tables and plot from stored records: statistics, paper rows kept apart, byte-identical
regeneration, clear errors."""

import json

import numpy as np
import pytest

from atm_bench.bench.results import ResultsStore
from atm_bench.cli import main
from atm_bench.errors import UserError
from atm_bench.bench.stats import fisher_exact_test
from atm_bench.tables import (comparison_rows, compute_rows, load_runs, per_seed_success, per_task_rows,
                              claim_lines, reference_lines, throughput_rows, write_tables)


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
    assert headers == ["method", "source", "Goal", "Goal pooled, 95 % CI", "average", "seeds", "seed ids"]
    ours = {r[0]: r for r in rows if r[1] == "ours"}
    assert ours["ATM"][2] == f"62.50 ± {np.std([50, 75]):.2f}" and ours["ATM"][5:] == ["2", "0,1"]
    assert ours["ATM"][3] == "62.5 % [30.6, 86.3] n=8"  # 5 of 8 episodes over both seeds, Wilson 95 %
    assert ours["BC"][2] == "25.00 ± 0.00" and ours["BC"][3] == "25.0 % [4.6, 69.9] n=4" and ours["BC"][5:] == ["1", "0"]
    paper = {r[0]: r for r in rows if r[1] == "paper"}
    assert paper["ATM"][2] == "77.83 ± 0.82" and paper["BC"][2] == "42.50 ± 4.95"
    assert paper["ATM"][3] == "-" and paper["ATM"][5:] == ["3", "-"]  # no episodes of the paper's to pool


def test_an_unfinished_seed_is_left_out_and_listed(run_dir, tmp_path):
    """A table made mid-run: the seed still being evaluated (task by task) would enter the mean
    with its first tasks only; it is left out of every table and named below the success table."""
    (run_dir / "config.json").write_text(json.dumps({"preset": "smoke", "labelled": 10, "episodes_per_task": 2,
                                                     "tasks": [0, 1]}))
    ResultsStore(run_dir / "results.jsonl").extend(_records("bc", "libero_goal", 1, [1, 1, 1]))  # 3 of 4
    run = load_runs([run_dir])[0]
    assert run.unfinished == {("bc", "libero_goal", 1): (3, 4)}
    assert per_seed_success(run.records)[("bc", "libero_goal")] == {0: 25.0}
    assert per_seed_success(run.records)[("atm", "libero_goal")] == {0: 50.0, 1: 75.0}  # complete: kept
    write_tables([run_dir], tmp_path / "tables")
    success_md = (tmp_path / "tables" / "success.md").read_text()
    assert "- BC seed 1 on Goal in run is left out: still being evaluated (3 of 4 episodes recorded).\n" in success_md
    assert "| BC " in success_md and "25.0 % [4.6, 69.9] n=4" in success_md  # seed 0 alone
    assert ["BC", "Goal", "1", "", "1", "2", "50.0", "[9.5, 90.5]"] in per_task_rows(run.records)[1]

    only_running = tmp_path / "only_running"
    ResultsStore(only_running / "results.jsonl").extend(_records("bc", "libero_goal", 0, [1]))
    (only_running / "config.json").write_text(json.dumps({"episodes_per_task": 2, "tasks": [0, 1]}))
    with pytest.raises(UserError, match="no agent-seed has finished its evaluation yet .bc seed 0: 1 of 4 episodes."):
        load_runs([only_running])


def test_per_task_table_pools_seeds_with_wilson_intervals(run_dir):
    headers, rows = per_task_rows(load_runs([run_dir])[0].records)
    assert headers == ["method", "suite", "task", "name", "successes", "n", "success %", "95 % CI"]
    assert rows == [["BC", "Goal", "0", "", "0", "2", "0.0", "[0.0, 65.8]"],
                    ["BC", "Goal", "1", "", "1", "2", "50.0", "[9.5, 90.5]"],
                    ["ATM", "Goal", "0", "", "3", "4", "75.0", "[30.1, 95.4]"],
                    ["ATM", "Goal", "1", "", "2", "4", "50.0", "[15.0, 85.0]"]]


def test_learned_agents_are_tested_against_the_best_reference_agent(run_dir, tmp_path):
    assert reference_lines(load_runs([run_dir])[0].records) == []  # no reference agent: nothing said
    write_tables([run_dir], tmp_path / "plain")
    claim = "".join(f"- {line}\n" for line in claim_lines(load_runs([run_dir])[0].records))
    assert (tmp_path / "plain" / "success.md").read_text().endswith("|\n\n" + claim)  # the table, then the claim

    records = load_runs([run_dir])[0].records
    records += _records("knn", "libero_goal", 0, [1] * 10 + [0] * 10)          # 50 %: the best reference
    records += _records("proprio-mlp", "libero_goal", 0, [0] * 20)
    records += _records("expert", "libero_goal", 0, [1] * 20)                  # scripted: not held to them
    records += _records("unipi", "libero_goal", 0, [1] * 20)                   # 100 % of 20
    records += _records("vpt", "libero_goal", 0, [0] * 20)                     # 0 % of 20
    lines = reference_lines(records)
    assert [line.split(" on Goal ")[0] for line in lines] == ["BC", "VPT", "UniPi", "ATM"]
    by_agent = {line.split(" on Goal ")[0]: line for line in lines}
    assert by_agent["UniPi"].startswith("UniPi on Goal beats the best reference agent, Nearest neighbour (ref.): "
                                        "100.0 % [83.9, 100.0] n=20 vs 50.0 % [29.9, 70.1] n=20, Fisher p < 0.001")
    assert " is beaten by the best reference agent, Nearest neighbour (ref.)" in by_agent["VPT"]
    assert by_agent["ATM"].startswith("ATM on Goal does not differ significantly from the best reference agent")
    assert by_agent["ATM"].endswith(f"Fisher p = {fisher_exact_test(5, 8, 10, 20):.3f} (alpha 0.05).")

    ResultsStore(run_dir / "results.jsonl").extend(_records("knn", "libero_goal", 0, [1] * 10 + [0] * 10))
    write_tables([run_dir], tmp_path / "with_reference")
    success_md = (tmp_path / "with_reference" / "success.md").read_text()
    assert success_md.endswith("".join(f"- {line}\n" for line in reference_lines(load_runs([run_dir])[0].records)) + claim)
    assert "| Nearest neighbour (ref.) | ours " in success_md.splitlines()[2]  # reference agents first


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
    assert {"success.md", "success.csv", "success.tex", "success_per_task.md", "success_per_task.csv",
            "success_per_task.tex", "compute.md", "throughput.md", "success.png"} <= set(first)
    assert b"77.83" in first["success.md"] and first["success.png"][:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_name_the_directory(tmp_path, capsys):
    with pytest.raises(UserError, match="no episode records"):
        load_runs([tmp_path])
    assert main(["tables", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_a_suite_outside_the_registry_is_listed_after_it_not_dropped():
    from atm_bench.tables import comparison_rows

    records = _records("bc", "real", 0, [True, False]) + _records("bc", "libero_goal", 0, [True])
    headers, rows = comparison_rows(records, with_paper=False)
    assert headers[2:6] == ["Goal", "Goal pooled, 95 % CI", "real", "real pooled, 95 % CI"]
    assert rows[0][4] == "50.00 ± 0.00"


def test_ablation_table_shows_the_settings_that_differ(tmp_path):
    """Runs that differ in stage 1's point source: a "point source" column (runs from before the
    option count as "all"), and no labelled column while all runs share it."""
    from atm_bench.tables import ablation_rows

    def run(name, successes, track_training):
        path = tmp_path / name
        ResultsStore(path / "results.jsonl").extend(_records("atm", "libero_goal", 0, successes))
        config = {"labelled": 10, "preset_config": {"track_training": track_training}}
        (path / "config.json").write_text(json.dumps(config))
        return path

    paper = run("paper", [1, 1, 0, 0], {"lr": 1e-4})  # recorded before point_source existed
    objects = run("objects", [1, 0, 0, 0], {"point_source": "objects"})
    robot = run("robot", [0, 0, 0, 0], {"point_source": "robot"})
    assert ablation_rows(load_runs([paper])) is None
    headers, rows = ablation_rows(load_runs([paper, objects, robot]))
    assert headers == ["method", "suite", "point source", "success %", "seeds"]
    assert [r[2:4] for r in rows] == [["all", "50.00 ± 0.00"], ["objects", "25.00 ± 0.00"], ["robot", "0.00 ± 0.00"]]
    (objects / "config.json").write_text(json.dumps({"labelled": 5, "preset_config": {}}))  # now also "all"
    headers, rows = ablation_rows(load_runs([paper, objects]))
    assert headers[2:4] == ["labelled", "success %"] and [r[2] for r in rows] == ["10", "5"]


def test_the_papers_claim_gets_compares_verdict_per_suite():
    """ATM > BC, per suite holding both: holds, reversed, not shown (held) or untested, with the
    numbers `compare RUN RUN --agents bc:atm` prints; nothing for a suite without both."""
    def claim(atm, bc):
        return claim_lines(_records("atm", "libero_goal", 0, atm) + _records("bc", "libero_goal", 0, bc)
                           + _records("atm", "libero_object", 0, [1]))

    assert claim([1] * 40 + [0] * 10, [1] * 10 + [0] * 40) == [
        "The paper's claim ATM > BC on Goal holds: ATM beats BC: ATM 80.0 % [67.0, 88.8] n=50 vs BC 20.0 % [11.2, 33.0] "
        f"n=50, Fisher p < 0.001, ATM - BC +60.0 points, 95 % CI [+41.6, +72.4] (verdict improved)."]
    assert " is reversed: BC beats ATM: " in claim([0] * 50, [1] * 25 + [0] * 25)[0]
    held = claim([1] * 60 + [0] * 40, [1] * 62 + [0] * 38)[0]
    assert " is not shown: no significant difference" in held and "(verdict held)" in held
    assert " is untested: too few episodes to tell: " in claim([1, 0, 0], [0, 1, 1])[0]


def test_variants_of_an_agent_get_their_own_success_rows(tmp_path):
    """Tables over an ablation's runs: ATM from runs of different point sources is never pooled into
    one success row (each variant named by its setting, the paper's ATM > BC claim tested per
    variant); BC, in one run only, keeps its name; the ablation table lists agents in the paper's order."""
    from atm_bench.tables import ablation_rows

    def run(name, agents, point_source):
        path = tmp_path / name
        for agent, successes in agents.items():
            ResultsStore(path / "results.jsonl").extend(_records(agent, "libero_goal", 0, successes))
        (path / "config.json").write_text(json.dumps({"labelled": 10, "preset_config": {
            "track_training": {"point_source": point_source}}}))
        return path

    main_run = run("main", {"atm": [1, 1, 0, 0], "bc": [1, 0, 0, 0], "knn": [1, 1, 1, 0]}, "all")
    robot = run("robot", {"atm": [1, 1, 1, 1]}, "robot")
    write_tables([main_run, robot], tmp_path / "tables")
    success = (tmp_path / "tables" / "success.md").read_text()
    assert "| ATM [all]   " in success and "| ATM [robot] " in success and "| BC  " in success
    assert "n=8" not in success  # ATM's 4 + 4 episodes never pooled
    assert sum(line.startswith("| ATM ") and "| paper " in line for line in success.splitlines()) == 1  # one paper row
    assert "- The paper's claim ATM [all] > BC on Goal " in success and "- The paper's claim ATM [robot] > BC " in success
    assert "- ATM [robot] on Goal does not differ significantly from the best reference agent, Nearest neighbour" in success
    assert [r[0] for r in ablation_rows(load_runs([main_run, robot]))[1]] == ["Nearest neighbour (ref.)", "BC", "ATM", "ATM"]
    write_tables([main_run], tmp_path / "one")
    assert "| ATM   " in (tmp_path / "one" / "success.md").read_text()  # one run: plain names


def test_an_episode_recorded_in_two_files_is_counted_once(run_dir, capsys):
    """A shard merged into results.jsonl but not deleted (a crash between the two, or a stale copy
    left in an exported directory) must not raise n or tilt the seed's rate."""
    before = load_runs([run_dir])[0].records
    shard = ResultsStore(run_dir / "shards" / "bc" / "seed0" / "task0.jsonl")
    shard.extend(_records("bc", "libero_goal", 0, [1, 1]))  # init states 0-1 again, now as successes
    records = load_runs([run_dir])[0].records
    assert len(records) == len(before) and per_seed_success(records)[("bc", "libero_goal")] == {0: 25.0}
    assert "2 episode(s) recorded again in shards/bc/seed0/task0.jsonl (2): each counted once" in capsys.readouterr().err
