"""Both example plug-ins, installed as their own packages, run through `atm-bench run` at smoke:
each receives the run's preset and seed, writes only into the run directory, and the ATM variant
(a subclass with one ablation flag and a `**kwargs` constructor) uses the run's shared stage-1
model instead of training its own."""

import json

import pytest

from atm_bench.bench.results import ResultsStore
from atm_bench.cli import main
from atm_bench.paths import cache_subdir

pytestmark = [pytest.mark.sim, pytest.mark.slow]


def _files(root):
    return {p for p in root.rglob("*") if p.is_file()}


def test_plugins_get_the_run_context_and_share_stage_one(plugin_site, tmp_path):
    out, data = tmp_path / "run", tmp_path / "data"
    cached_runs = _files(cache_subdir("runs"))
    assert main(["run", "--suite", "libero-goal", "--preset", "smoke", "--out", str(out), "--data-dir", str(data),
                 "--agents", "atm,atm-no-late-fusion,proprio-ridge", "--seeds", "2", "--tasks", "0"]) == 0

    records = ResultsStore(out / "results.jsonl").records()
    assert {(r["agent"], r["seed"], r["preset"]) for r in records} == {
        (a, 2, "smoke") for a in ("atm", "atm-no-late-fusion", "proprio-ridge")}
    ridge = json.loads((out / "agents/proprio-ridge/seed2/checkpoint/agent.json").read_text())
    assert (ridge["preset"], ridge["seed"]) == ("smoke", 2)

    shared = (out / "track_model" / "model.safetensors").read_bytes()
    for name, late_fusion in (("atm", True), ("atm-no-late-fusion", False)):
        work = out / "agents" / name / "seed2"
        policy = json.loads((work / "checkpoint" / "policy" / "config.json").read_text())
        assert (policy["preset"], policy["training"]["seed"], policy["model"]["late_fusion"]) == ("smoke", 2, late_fusion)
        assert not (work / "track_model").exists(), f"{name} trained its own stage-1 model"
        assert (work / "checkpoint" / "track_model" / "model.safetensors").read_bytes() == shared  # the run's model

    stages = json.loads((out / "stages.json").read_text())
    assert stages["train/atm/seed2"]["key"] != stages["train/atm-no-late-fusion/seed2"]["key"]
    assert _files(cache_subdir("runs")) == cached_runs  # nothing written outside the run directory
