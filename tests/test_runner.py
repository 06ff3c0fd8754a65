"""The runner's stage cache (what retrains an agent) and what retraining does to earlier results,
without the simulator: `Runner` is built but no stage runs."""

from __future__ import annotations

import dataclasses
import json
import shutil

from atm_bench.bench.results import ResultsStore
from atm_bench.bench.runner import RunConfig, Runner
from atm_bench.tables import load_runs


def _rec(agent, seed, init_state=0):
    return {"agent": agent, "suite": "libero_goal", "task": 0, "init_state": init_state, "seed": seed,
            "protocol": "atm", "preset": "smoke", "horizon": 20, "success": False, "steps": 20, "seconds": 1.0}


def _runner(tmp_path):
    return Runner(RunConfig(suite="libero-goal", agents=("atm", "bc"), preset="smoke", out=tmp_path / "run",
                            data_dir=tmp_path / "data"), progress=False)


def test_stage_one_settings_retrain_only_the_agents_that_use_the_track_model(tmp_path):
    runner = _runner(tmp_path)
    with_tracks, without = runner._training_preset(True, 0), runner._training_preset(False, 0)
    runner.preset = dataclasses.replace(runner.preset, track_model=dataclasses.replace(runner.preset.track_model,
                                                                                       invisible_weight=0.5))
    assert runner._training_preset(False, 0) == without  # BC, R3M, VPT, UniPi keep their checkpoints
    assert runner._training_preset(True, 0) != with_tracks  # ATM trains again
    runner.preset = dataclasses.replace(runner.preset, policy=dataclasses.replace(runner.preset.policy, window=2))
    assert runner._training_preset(False, 0) != without  # the policy network is everyone's


def test_each_seed_reaches_every_stage_an_agent_trains(tmp_path):
    """Seeds 0 and 1 once trained byte-identical BC, VPT and ATM policies: the runner seeded torch,
    then each training stage reseeded it from its preset's seed 0."""
    from atm_bench.baselines.presets import get_baseline_preset

    runner = _runner(tmp_path)
    assert runner._training_preset(True, 0) == dataclasses.asdict(runner.preset)  # seed 0: the preset as it is
    assert runner._training_preset(False, 1) != runner._training_preset(False, 0)  # other seeds: their own cache
    for name in ("atm", "bc", "r3m", "vpt", "unipi", "unipi-replan"):
        agent = runner._make_agent(name, tmp_path / name, None, 3)
        assert agent.preset.policy_training.seed == agent.preset.track_training.seed == 3, name
        baseline = getattr(agent, "baseline", None)
        if baseline is not None:
            trainings = (baseline.r3m.training, baseline.idm.training, baseline.unipi.video.training)
            assert {t.seed for t in trainings} == {3}, name
    assert get_baseline_preset("smoke").r3m.training.seed == 0  # the presets themselves are left alone
    assert runner._make_agent("unipi", tmp_path / "u", None, 3).seed == 3  # and UniPi samples with it


def test_baselines_name_their_own_settings_for_the_cache():
    from atm_bench.agents.base import get_agent
    from atm_bench.baselines.presets import get_baseline_preset

    quick = get_baseline_preset("quick")
    assert get_agent("vpt")("smoke").training_config() == {"idm": dataclasses.asdict(get_baseline_preset("smoke").idm)}
    assert get_agent("unipi")("quick").training_config() == {"unipi": dataclasses.asdict(quick.unipi)}
    r3m = get_agent("r3m")("quick").training_config()
    assert r3m["r3m"] == dataclasses.asdict(quick.r3m) and r3m["init"]["source"] == "random"
    assert get_agent("bc")("smoke").training_config() == {}


def test_a_finished_agent_and_seed_is_not_run_again_even_without_its_checkpoint(tmp_path):
    """Trained under the current key, every episode, FLOPs and serial speed recorded: finished.
    A committed run directory (no checkpoints) can so be extended by more seeds."""
    from types import SimpleNamespace

    runner = _runner(tmp_path)
    out, manifest = runner.out, SimpleNamespace(manifest_sha256="m" * 64)
    track_key = runner._track_model_key(manifest)
    horizon = min(runner._horizon(), runner.protocol.horizon(runner.suite))
    store = ResultsStore(out / "results.jsonl")
    for name in ("atm", "bc"):
        agent = runner._make_agent(name, tmp_path / name, None, 0)
        runner._mark(f"train/{name}/seed0", runner._train_key(name, 0, agent, manifest, track_key))
        store.extend([{**_rec(name, 0, k), "task": t, "horizon": horizon}
                      for t in runner.tasks for k in range(runner._episodes())])
    (out / "flops.json").write_text(json.dumps({"atm": {"macs": 2.0}, "bc": {"macs": 1.0}}))
    (out / "throughput.json").write_text(json.dumps({"agents": {n: {"serial": {"steps_per_second": 9.0}, "seeds": {}}
                                                                for n in ("atm", "bc")}}))

    assert runner._finished("bc", 0, manifest, track_key) and runner._finished("atm", 0, manifest, track_key)
    assert not runner._finished("bc", 1, manifest, track_key)  # another seed: to train
    assert not runner._finished("bc", 0, SimpleNamespace(manifest_sha256="n" * 64), track_key)  # other data
    assert not runner._finished("atm", 0, manifest, "other stage 1")  # ATM follows its track model
    assert runner._finished("bc", 0, manifest, "other stage 1")  # BC does not
    store.supersede(lambda r: r["agent"] == "bc" and r["init_state"] == 0 and r["task"] == runner.tasks[0])
    assert not runner._finished("bc", 0, manifest, track_key)  # an episode is missing


def test_retraining_supersedes_the_agents_earlier_records(tmp_path):
    runner = _runner(tmp_path)
    out = runner.out
    store = ResultsStore(out / "results.jsonl")
    store.extend([_rec("bc", 0, 0), _rec("bc", 0, 1), _rec("bc", 1, 0), _rec("atm", 0, 0)])
    (out / "flops.json").write_text(json.dumps({"bc": {"macs": 1.0}, "atm": {"macs": 2.0}}))
    (out / "throughput.json").write_text(json.dumps({"agents": {"bc": {
        "serial": {"steps_per_second": 10.0}, "seeds": {"0": {"steps_per_second": 20.0}, "1": {"steps_per_second": 21.0}}}}}))

    runner._supersede("bc", 0)
    assert [(r["agent"], r["seed"]) for r in store.records()] == [("bc", 1), ("atm", 0)]
    assert [r["init_state"] for r in ResultsStore(out / "results.superseded.jsonl").records()] == [0, 1]
    assert json.loads((out / "flops.json").read_text()) == {"atm": {"macs": 2.0}}  # counted again
    bc = json.loads((out / "throughput.json").read_text())["agents"]["bc"]
    assert set(bc["seeds"]) == {"1"} and bc["serial"] == {"steps_per_second": 10.0}
    # tables never count superseded episodes
    assert sorted((r["agent"], r["seed"]) for r in load_runs([out])[0].records) == [("atm", 0), ("bc", 1)]

    before = (out / "results.jsonl").read_bytes()
    runner._supersede("bc", 2)  # a seed trained for the first time: nothing to move, nothing dropped
    assert (out / "results.jsonl").read_bytes() == before
    assert json.loads((out / "flops.json").read_text()) == {"atm": {"macs": 2.0}}


def test_a_checkpoint_digest_changes_with_its_bytes_only(tmp_path):
    from atm_bench.bench.runner import _tree_digest

    assert _tree_digest(tmp_path / "none") is None
    (tmp_path / "ckpt" / "policy").mkdir(parents=True)
    (tmp_path / "ckpt" / "policy" / "model.safetensors").write_bytes(b"w1")
    first = _tree_digest(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "policy" / "model.safetensors").write_bytes(b"w1")  # rewritten, same bytes
    assert _tree_digest(tmp_path / "ckpt") == first
    (tmp_path / "ckpt" / "policy" / "model.safetensors").write_bytes(b"w2")
    assert _tree_digest(tmp_path / "ckpt") != first


def test_retraining_without_the_checkpoint_keeps_records_when_it_gives_the_same_bytes(tmp_path, monkeypatch):
    """A run directory kept without checkpoints: a repeated training that reproduces the stored
    digest keeps the episodes made with it; other bytes supersede them."""
    from types import SimpleNamespace

    import atm_bench.bench.evaluation as evaluation

    class Fake:
        weights = b"w1"

        def training_config(self):
            return {}

        def fit(self, data, budget):
            pass

        def save(self, directory):
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "model.safetensors").write_bytes(self.weights)

    runner = _runner(tmp_path)
    runner.rendering = (32, "fast")  # what `run` reads from the split's data before training
    agent = Fake()
    monkeypatch.setattr(runner, "_make_agent", lambda *args: agent)
    monkeypatch.setattr(runner, "_record_flops", lambda *args: None)
    monkeypatch.setattr(runner, "_measure_serial", lambda *args: None)
    monkeypatch.setattr(evaluation, "run_evaluation", lambda *a, **k: SimpleNamespace(run=lambda: None, stats=None))
    manifest, store = SimpleNamespace(manifest_sha256="m" * 64), ResultsStore(runner.out / "results.jsonl")
    checkpoint = runner.out / "agents" / "bc" / "seed0" / "checkpoint"

    runner.run_agent("bc", 0, manifest, None, "t")
    first = runner.stages["train/bc/seed0"]["checkpoint"]
    store.extend([_rec("bc", 0, 0)])  # then the run directory is kept without its checkpoint
    shutil.rmtree(checkpoint)
    runner.run_agent("bc", 0, manifest, None, "t")
    assert len(store.records()) == 1  # the same weights again: the episode stands

    shutil.rmtree(checkpoint)
    agent.weights = b"w2"
    runner.run_agent("bc", 0, manifest, None, "t")
    assert store.records() == [] and runner.stages["train/bc/seed0"]["checkpoint"] not in (None, first)
