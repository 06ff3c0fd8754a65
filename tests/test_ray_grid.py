"""`atm-bench run --executor ray`: shards merge without losing or double-counting an episode, and a
smoke grid on a local Ray instance records what the local executor records."""

from __future__ import annotations

import json

import pytest

from atm_bench.bench.results import ResultsStore, record_key
from atm_bench.cli import main


def _rec(task, init_state, success=False):
    return {"agent": "a", "suite": "libero_goal", "task": task, "init_state": init_state, "seed": 0,
            "protocol": "atm", "preset": "smoke", "horizon": 20, "success": success, "steps": 20, "seconds": 1.0}


def test_absorbing_a_shard_adds_only_new_episodes_and_removes_the_shard(tmp_path):
    main_store, shard = ResultsStore(tmp_path / "results.jsonl"), ResultsStore(tmp_path / "shard.jsonl")
    main_store.extend([_rec(0, 0), _rec(0, 1)])
    shard.extend([_rec(0, 1), _rec(0, 2, success=True), _rec(0, 2, success=True)])  # merged once already; a repeat
    assert main_store.absorb(shard) == 1
    assert not shard.path.exists()
    assert sorted(r["init_state"] for r in main_store.records()) == [0, 1, 2]
    assert main_store.absorb(shard) == 0  # a second merge (a driver killed before deleting) adds nothing


def test_without_ray_the_executor_is_refused_with_the_install_line(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "atm_bench.bench.ray_grid", raising=False)
    assert main(["run", "--suite", "libero-goal", "--executor", "ray"]) == 2
    assert "pip install 'atm-bench[cluster]'" in capsys.readouterr().err


def _grid():
    pytest.importorskip("ray", reason="the cluster extra: pip install 'atm-bench[cluster]'")
    from atm_bench.bench import ray_grid

    return ray_grid


def _job(rank, order, cpus, gpus=0.0):
    resources = {"num_cpus": cpus, **({"num_gpus": gpus} if gpus else {})}
    return _grid().Job(rank, order, print, (), resources, print)


def test_admission_starts_trainings_first_and_lets_a_small_task_pass_a_large_one():
    grid = _grid()
    SHARD, TRAIN, admit = grid.SHARD, grid.TRAIN, grid.admit
    shard, shard2, training = _job(SHARD, 0, 2), _job(SHARD, 1, 2), _job(TRAIN, 2, 1)
    # One of two CPUs free: the 2-CPU shard queued first does not hold back the 1-CPU training.
    assert admit([shard, training], (1, 0), idle=False) == [training]
    # Both free: the training first, then nothing else fits.
    assert admit([shard, shard2, training], (2, 0), idle=True) == [training]
    assert admit([shard, shard2], (4, 0), idle=True) == [shard, shard2]
    assert admit([shard, shard2], (0, 0), idle=False) == []


def test_admission_counts_gpus_and_runs_a_task_larger_than_the_cluster_when_idle():
    grid = _grid()
    SHARD, TRAIN, admit = grid.SHARD, grid.TRAIN, grid.admit
    gpu_training = _job(TRAIN, 0, 1)
    gpu_training.resources = {"num_gpus": 1}  # no num_cpus: Ray's default of one CPU
    assert gpu_training.needs() == (1.0, 1.0)
    quarter = [_job(SHARD, i, 1, gpus=0.25) for i in range(5)]
    assert admit([gpu_training, *quarter], (8, 1), idle=True) == [gpu_training]
    assert admit(quarter, (8, 1), idle=True) == quarter[:4]
    huge = _job(SHARD, 9, 64)
    assert admit([huge], (2, 0), idle=False) == []
    assert admit([huge], (2, 0), idle=True) == [huge]


def test_the_driver_hands_ray_only_what_fits_and_times_from_the_hand_over(monkeypatch):
    grid = _grid()
    monkeypatch.setattr(grid.ray, "cluster_resources", lambda: {"CPU": 2.0})
    driver, handed = grid.RayGrid(), []
    monkeypatch.setattr(driver, "_remote", lambda fn, resources, *args: handed.append(args) or len(handed))
    shards = [driver._submit(grid.SHARD, print, (f"shard{i}",), {"num_cpus": 2}, print) for i in range(2)]
    training = driver._submit(grid.TRAIN, print, ("training",), {"num_cpus": 1}, print)
    driver._dispatch()
    assert handed == [("training",)] and driver.queue == shards  # the shards wait in the driver
    driver.jobs.clear()  # the training ended
    driver._dispatch()
    assert handed[-1] == ("shard0",) and driver.queue == shards[1:]


def test_the_driver_writes_running_time_as_it_passes_from_the_hand_over(monkeypatch, tmp_path):
    """A driver killed mid-training lost the training's hours when its time was added only at the end;
    an agent-seed's shards count the time any of them ran, once, and not their wait in the queue."""
    from types import SimpleNamespace

    from atm_bench.bench.timing import StageTimes

    grid = _grid()
    timing = tmp_path / "timing.json"
    monkeypatch.setattr(grid.ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(grid.ray, "get", lambda ref: ref)
    # training and shard A handed over; wait timed out; A ends; B handed over; training ends; B ends
    now = iter([100.0, 100.0, 130.0, 140.0, 150.0, 160.0, 170.0])
    monkeypatch.setattr(grid, "time", SimpleNamespace(perf_counter=lambda: next(now)))
    ready = iter([[], ["shardA"], ["training"], ["shardB"]])
    written = []

    def wait(refs, num_returns, timeout):
        assert num_returns == 1 and timeout == grid.FLUSH_SECONDS
        written.append(json.loads(timing.read_text()) if timing.exists() else {})
        return next(ready), refs

    monkeypatch.setattr(grid.ray, "wait", wait)
    driver, ended = grid.RayGrid(), []
    driver.runner = SimpleNamespace(timing=StageTimes(timing))
    monkeypatch.setattr(driver, "_remote", lambda fn, resources, *args: args[0])
    train, evaluation = grid.Clock("train/a/seed0"), grid.Clock("eval/a/seed0")
    driver._submit(grid.TRAIN, print, ("training",), {"num_cpus": 1}, ended.append, train)
    for shard in ("shardA", "shardB"):
        driver._submit(grid.SHARD, print, (shard,), {"num_cpus": 1}, ended.append, evaluation)
    driver._drain()
    assert ended == ["shardA", "training", "shardB"]
    assert written[1] == {"train/a/seed0": 30.0, "eval/a/seed0": 30.0}  # while both ran
    assert json.loads(timing.read_text()) == {"train/a/seed0": 60.0, "eval/a/seed0": 60.0}
    assert (train.seconds, evaluation.seconds, train.running, evaluation.running) == (60.0, 60.0, 0, 0)


def _outcomes(path):
    """Per episode: what the local and the Ray executor must agree on."""
    return {record_key(r): (r["success"], r["steps"], r["episode_seed"]) for r in ResultsStore(path).records()}


@pytest.mark.sim
@pytest.mark.slow
def test_ray_smoke_grid_records_what_the_local_executor_records_and_resumes(tmp_path, capsys):
    pytest.importorskip("ray", reason="the cluster extra: pip install 'atm-bench[cluster]'")
    data = tmp_path / "data"
    args = ["run", "--suite", "libero-goal", "--preset", "smoke", "--agents", "proprio-mlp,expert", "--seeds", "0,1",
            "--episodes", "2", "--data-dir", str(data)]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    ray_out = tmp_path / "ray"
    assert main([*args, "--out", str(ray_out), "--executor", "ray"]) == 0
    log = capsys.readouterr().out
    assert "[ray] " in log and "[stage] train/proprio-mlp/seed1: start on Ray" in log
    local = _outcomes(tmp_path / "local" / "results.jsonl")
    assert len(local) == 2 * 2 * 2 * 2  # agents x seeds x tasks x episodes
    assert _outcomes(ray_out / "results.jsonl") == local
    assert not any((ray_out / "shards").rglob("*.jsonl"))  # every shard merged and removed
    stages = json.loads((ray_out / "stages.json").read_text())
    assert {"train/proprio-mlp/seed0", "train/proprio-mlp/seed1"} <= set(stages)
    throughput = json.loads((ray_out / "throughput.json").read_text())["agents"]
    assert set(throughput["expert"]["seeds"]) == {"0", "1"} and "serial" in throughput["proprio-mlp"]
    timing = json.loads((ray_out / "timing.json").read_text())
    assert timing["eval/expert/seed1"] > 0 and timing["train/proprio-mlp/seed0"] > 0
    assert "proprio-mlp" in json.loads((ray_out / "flops.json").read_text())

    # A driver killed mid-run: one episode only in its shard's file (merged before the worker
    # finished deleting it), one not recorded at all (its worker died). The rerun merges the first,
    # runs only the second, and trains nothing.
    store = ResultsStore(ray_out / "results.jsonl")
    records = store.records()
    in_shard, lost = records[0], records[-1]
    assert in_shard["agent"] != lost["agent"] or in_shard["seed"] != lost["seed"] or in_shard["task"] != lost["task"]
    shard = ResultsStore(ray_out / "shards" / in_shard["agent"] / f"seed{in_shard['seed']}" /
                         f"task{in_shard['task']}.jsonl")
    shard.append(in_shard)
    kept = [r for r in records if record_key(r) not in {record_key(in_shard), record_key(lost)}]
    store.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    assert main([*args, "--out", str(ray_out), "--executor", "ray"]) == 0
    log = capsys.readouterr().out
    assert "start on Ray" not in log  # no training again
    assert f"eval {lost['agent']} seed {lost['seed']}: {lost['steps']} env steps of 1 episodes in 1 shard(s)" in log
    assert _outcomes(store.path) == local
    assert len(store.records()) == len(local) and not shard.path.exists()
