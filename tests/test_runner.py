"""The runner's stage cache (what retrains an agent) and what retraining does to earlier results,
without the simulator: `Runner` is built but no stage runs."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from atm_bench import presets
from atm_bench.bench.results import ResultsStore
from atm_bench.bench.runner import RunConfig, Runner
from atm_bench.tables import load_runs


def _rec(agent, seed, init_state=0):
    return {"agent": agent, "suite": "libero_goal", "task": 0, "init_state": init_state, "seed": seed,
            "protocol": "atm", "preset": "smoke", "horizon": 20, "success": False, "steps": 20, "seconds": 1.0}


def _runner(tmp_path):
    return Runner(RunConfig(suite="libero-goal", agents=("atm", "bc"), preset="smoke", out=tmp_path / "run",
                            data_dir=tmp_path / "data"), progress=False)


def _key(runner, name, seed, track_key="t"):
    from types import SimpleNamespace

    return runner._train_key(name, seed, runner.build_agent(name, seed), SimpleNamespace(manifest_sha256="m"), track_key)


def test_stage_one_settings_retrain_only_the_agents_that_use_the_track_model(tmp_path):
    runner = _runner(tmp_path)
    before = {name: _key(runner, name, 0) for name in ("atm", "bc", "unipi", "knn")}
    stage1 = dataclasses.replace(runner.preset.track_model, invisible_weight=0.5)
    preset = dataclasses.replace(runner.preset, track_model=stage1)
    with pytest.MonkeyPatch.context() as mp:  # what the agents build from the preset's name
        mp.setattr("atm_bench.presets.PRESETS", {**presets.PRESETS, "smoke": lambda: preset})
        after = {name: _key(runner, name, 0) for name in before}
        assert after["atm"] != before["atm"]  # ATM trains again
        assert {n: after[n] for n in ("bc", "unipi", "knn")} == {n: before[n] for n in ("bc", "unipi", "knn")}
        assert _key(runner, "bc", 0, "other stage 1") == before["bc"] != _key(runner, "atm", 0, "other stage 1")
        windowed = dataclasses.replace(preset, policy=dataclasses.replace(preset.policy, window=2))
        mp.setattr("atm_bench.presets.PRESETS", {**presets.PRESETS, "smoke": lambda: windowed})
        assert _key(runner, "bc", 0) != before["bc"]  # the policy network is everyone's


def test_each_seed_reaches_every_stage_an_agent_trains(tmp_path):
    """Seeds 0 and 1 once trained byte-identical BC, VPT and ATM policies: the runner seeded torch,
    then each training stage reseeded it from its preset's seed 0."""
    from atm_bench.baselines.presets import get_baseline_preset

    runner = _runner(tmp_path)
    for name in ("atm", "bc", "r3m", "vpt", "unipi", "unipi-replan", "proprio-mlp", "knn"):
        assert _key(runner, name, 1) != _key(runner, name, 0), name  # every seed: its own cache entry
        agent = runner.build_agent(name, 3)
        assert agent.preset.policy_training.seed == 3, name
        assert agent.work_dir == runner.out / "agents" / name / "seed3", name  # writes inside the run only
        baseline = getattr(agent, "baseline", None)
        if baseline is not None:
            trainings = (baseline.r3m.training, baseline.idm.training, baseline.unipi.video.training)
            assert {t.seed for t in trainings} == {3}, name
    assert runner.build_agent("atm", 3).preset.track_training.seed == 3
    assert get_baseline_preset("smoke").r3m.training.seed == 0  # the presets themselves are left alone
    assert runner.build_agent("unipi", 3).seed == 3  # and UniPi samples with it


def test_agents_resolve_their_own_settings_for_the_cache():
    from atm_bench.agents.base import RunContext, make_agent
    from atm_bench.baselines.presets import get_baseline_preset

    quick = get_baseline_preset("quick")
    vpt = make_agent("vpt", RunContext(preset="smoke")).resolved_config()
    assert vpt["idm"] == dataclasses.asdict(get_baseline_preset("smoke").idm)
    assert "track_model" not in vpt["preset"] and "eval" not in vpt["preset"]
    assert make_agent("unipi", RunContext()).resolved_config()["unipi"] == dataclasses.asdict(quick.unipi)
    r3m = make_agent("r3m", RunContext()).resolved_config()
    assert r3m["r3m"] == dataclasses.asdict(quick.r3m) and r3m["init"]["source"] == "random"
    atm = make_agent("atm", RunContext(preset="smoke")).resolved_config()
    assert atm["preset"]["track_model"] == dataclasses.asdict(presets.get_preset("smoke").track_model)
    ablated = make_agent("atm", RunContext(preset="smoke"))
    ablated.policy_overrides = {"late_fusion": False}
    assert ablated.resolved_config() != atm  # an ablation is another training


def test_a_finished_agent_and_seed_is_not_run_again_even_without_its_checkpoint(tmp_path):
    """Trained under the current key, every episode, FLOPs and serial speed recorded: finished.
    A committed run directory (no checkpoints) can so be extended by more seeds."""
    from types import SimpleNamespace

    runner = _runner(tmp_path)
    out, manifest = runner.out, SimpleNamespace(manifest_sha256="m" * 64)
    track_key = runner._track_model_key(manifest)
    horizon = runner.horizon
    store = ResultsStore(out / "results.jsonl")
    for name in ("atm", "bc"):
        agent = runner.build_agent(name, 0)
        runner.mark(f"train/{name}/seed0", runner._train_key(name, 0, agent, manifest, track_key))
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
    from atm_bench.bench.stages import tree_digest as _tree_digest

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

    import atm_bench.bench.runner as runner_module

    class Fake:
        weights = b"w1"

        privileged = False
        uses_track_model = False

        def resolved_config(self):
            return {}

        def fit(self, data, budget):
            pass

        def save(self, directory):
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "model.safetensors").write_bytes(self.weights)

    runner = _runner(tmp_path)
    runner.rendering = (32, "fast")  # what `run` reads from the split's data before training
    agent = Fake()
    monkeypatch.setattr(runner, "build_agent", lambda *args: agent)
    monkeypatch.setattr(runner, "record_agent_flops", lambda *args: None)
    monkeypatch.setattr(runner, "measure_serial", lambda *args: None)
    monkeypatch.setattr(runner_module, "run_evaluation", lambda *a, **k: SimpleNamespace(run=lambda: None, stats=None))
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


def test_the_point_source_goes_into_stage_ones_key_and_the_recorded_preset(tmp_path, monkeypatch):
    """`run --point-source`: stage 1 (and so ATM) trains again, the run's config records it, and
    by default the run gets its own directory beside the paper's setting."""
    from types import SimpleNamespace

    monkeypatch.chdir(tmp_path)
    manifest = SimpleNamespace(manifest_sha256="m" * 64)
    runners = {source: Runner(RunConfig(suite="libero-goal", agents=("atm", "bc"), preset="smoke",
                                        data_dir=tmp_path / "data", point_source=source), progress=False)
               for source in ("all", "objects")}
    objects = runners["objects"]
    assert objects.preset.track_training.point_source == "objects"
    assert runners["all"]._track_model_key(manifest) != objects._track_model_key(manifest)
    assert (runners["all"].out.name, objects.out.name) == ("libero-goal-smoke-atm-l2", "libero-goal-smoke-atm-l2-objects")
    objects._write_config(None)
    recorded = json.loads((objects.out / "config.json").read_text())["preset_config"]
    assert recorded["track_training"]["point_source"] == "objects"
    assert recorded["policy_training"]["point_source"] == "all"  # the policy's training draws no points


@pytest.mark.parametrize("field,value,folder", [("perturb", 0.03, "expert-32-perturb0.03"),
                                                ("approach", 0.08, "expert-32-approach0.08")])
def test_other_expert_setups_get_their_own_cache_and_reach_generation(tmp_path, monkeypatch, field, value, folder):
    """A preset whose demos come from another expert set-up (DART pushes, a gentler servo) must not
    reuse (or resume into) the default demos' cache, and generation must be told the set-up."""
    base = presets.get_preset("smoke")
    changed = dataclasses.replace(base, data=dataclasses.replace(base.data, **{field: value}))
    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))
    plain_dir = Runner(RunConfig(suite="libero-goal", agents=("bc",), preset="smoke", out=tmp_path / "a"),
                       progress=False).data_dir
    monkeypatch.setattr("atm_bench.presets.PRESETS", {**presets.PRESETS, "smoke": lambda: changed})
    runner = Runner(RunConfig(suite="libero-goal", agents=("bc",), preset="smoke", out=tmp_path / "b"), progress=False)
    assert plain_dir.name == "expert-32" and runner.data_dir.name == folder
    staged = []
    monkeypatch.setattr(runner, "execute", staged.append)
    runner.generate_data()
    assert getattr(staged[0].config, field) == value
    assert staged[0].config.identity()[field] == value  # a resume with another set-up is refused


def test_a_run_refuses_data_that_differ_from_what_its_recorded_episodes_trained_on(tmp_path):
    """Continued on regenerated demos whose bytes differ (another machine's rendering), the run
    would retrain every agent and supersede its episodes: it stops first, in one line, and says
    how to go on. Without recorded episodes new data just remake the split."""
    from atm_bench.envs.libero.suites import list_tasks
    from atm_bench.errors import UserError

    from atm_synthetic import write_task_file

    task = list_tasks("libero_goal")[0]
    path = tmp_path / "data" / "libero_goal" / f"{task.name}_demo.hdf5"
    write_task_file(path, demos=4, instruction=task.instruction)
    runner = Runner(RunConfig(suite="libero-goal", agents=("bc",), preset="smoke", out=tmp_path / "run", tasks=(0,),
                              labelled=2, data_dir=tmp_path / "data"), progress=False)
    first = runner.make_split()
    write_task_file(path, demos=4, instruction=task.instruction, seed=1)  # the same demos, other bytes
    second = runner.make_split()  # nothing recorded yet: the split follows the data
    assert second.manifest_sha256 != first.manifest_sha256
    ResultsStore(runner.out / "results.jsonl").extend([_rec("bc", 0)])
    split = (runner.out / "split.json").read_bytes()
    write_task_file(path, demos=4, instruction=task.instruction, seed=2)
    with pytest.raises(UserError, match=rf"{task.name}_demo.hdf5 differs from the file the 1 episodes .* remove "):
        runner.make_split()
    assert (runner.out / "split.json").read_bytes() == split  # nothing changed
    write_task_file(path, demos=4, instruction=task.instruction, seed=1)  # the run's own data again
    assert runner.make_split().manifest_sha256 == second.manifest_sha256


def test_config_keeps_every_invocations_revision_and_hardware(tmp_path, monkeypatch):
    """A run continued on another machine or revision: config.json's snapshot is the last
    invocation's, and its `invocations` keep each one's start, revision, hardware and executor
    (one entry per invocation however often it writes the config; a config written before
    invocations were kept contributes its revision as the first)."""
    from atm_bench.bench import runner as runner_module

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"git_revision": "old", "hardware": {"cpu": "AMD"}}))
    first = _runner(tmp_path)
    first._write_config(None)
    first._write_config("m")
    monkeypatch.setattr(runner_module, "environment_snapshot",
                        lambda: {"git_revision": "new", "hardware": {"cpu": "Intel"}, "versions": {}})
    second = _runner(tmp_path)
    second.executor = "RayGrid"
    second._write_config(None)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    history = config["invocations"]
    assert [i["git_revision"] for i in history][::2] == ["old", "new"] and len(history) == 3
    assert [i["executor"] for i in history] == [None, "local", "RayGrid"]
    assert history[0]["started_at"] is None and history[1]["started_at"] == first.started_at
    assert config["git_revision"] == "new" and history[2]["hardware"] == {"cpu": "Intel"}
