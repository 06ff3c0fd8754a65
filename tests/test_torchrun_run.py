"""`torchrun --nproc_per_node 2 atm-bench run` (gloo, 2 CPU processes, the real simulator at
`smoke`): stage 1 and ATM's policy train under DDP in both processes, an agent whose training
cannot (proprio-mlp) trains in rank 0 alone with the weights one process gives, evaluation is dealt
over the processes by task and merged into the episodes one process records, rank 0 alone
reports, and a rerun resumes from a killed run's shard files without training again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from atm_bench.bench.results import ResultsStore, record_key
from test_distributed import _free_port

CLI = str(Path(sys.executable).parent / "atm-bench")


def _run(tmp_path: Path, out: str, agents: str, processes: int) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                f"--master_port={_free_port()}"] if processes > 1 else []
    argv = [*launcher, CLI, "run", "--suite", "libero-goal", "--preset", "smoke", "--agents", agents, "--seeds", "0",
            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _outcomes(path: Path, agent: str | None = None) -> dict:
    return {record_key(r): (r["success"], r["steps"], r["episode_seed"]) for r in ResultsStore(path).records()
            if agent is None or r["agent"] == agent}


@pytest.mark.sim
@pytest.mark.slow
def test_the_runner_under_torchrun_trains_with_ddp_deals_evaluation_and_resumes(tmp_path):
    two = tmp_path / "two"
    log = _run(tmp_path, "two", "atm,proprio-mlp", 2).stdout
    assert log.count("results: ") == 1 and log.count("[torchrun] 2 processes: DDP training for atm,") == 1
    assert "[stage] stage1_track_model: done" in log
    outcomes = _outcomes(two / "results.jsonl")
    assert len(outcomes) == 2 * 2  # agents x tasks (x 1 episode)
    assert not any((two / "shards").rglob("*.jsonl"))  # every shard merged and removed
    stages = json.loads((two / "stages.json").read_text())
    assert {"track_model", "train/atm/seed0", "train/proprio-mlp/seed0"} <= set(stages)
    assert (two / "agents" / "atm" / "seed0" / "checkpoint" / "policy" / "model.safetensors").is_file()

    one = tmp_path / "one"
    _run(tmp_path, "one", "proprio-mlp", 1)
    assert _outcomes(one / "results.jsonl") == _outcomes(two / "results.jsonl", "proprio-mlp")
    weights = [load_file(run / "agents" / "proprio-mlp" / "seed0" / "checkpoint" / "model.safetensors")
               for run in (one, two)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # trained by rank 0 alone

    # A killed run: one ATM episode only in its shard file, one not recorded at all.
    store = ResultsStore(two / "results.jsonl")
    records = [r for r in store.records() if r["agent"] == "atm"]
    in_shard, lost = records
    ResultsStore(two / "shards" / "atm" / "seed0" / f"task{in_shard['task']}.jsonl").append(in_shard)
    kept = [r for r in store.records() if record_key(r) not in {record_key(in_shard), record_key(lost)}]
    store.path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    log = _run(tmp_path, "two", "atm,proprio-mlp", 2).stdout
    assert "[stage] train/" not in log and "stage1_track_model: start" not in log  # nothing trained again
    assert f"eval atm seed 0 task {in_shard['task']}: 1 episode(s) merged" in log
    assert "eval atm seed 0: 20 env steps of 1 episodes in 1 shard(s)" in log
    assert _outcomes(store.path) == outcomes
