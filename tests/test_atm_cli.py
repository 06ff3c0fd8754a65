"""`atm-bench models describe` and `atm-bench train tracks/policy` on a synthetic task file."""

import json

from atm_bench.cli import main

from atm_synthetic import write_task_file


def test_models_describe_smoke(capsys):
    assert main(["models", "describe", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "track transformer" in out and "ATM full env step" in out and "TMAC" in out


def test_unknown_preset_is_one_line_error(capsys):
    assert main(["models", "describe", "--preset", "huge"]) == 2
    assert "valid choices: smoke, quick, paper" in capsys.readouterr().err


def test_train_tracks_then_policy(tmp_path, monkeypatch, capsys):
    from atm_bench.envs.libero.suites import list_tasks

    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))
    task = list_tasks("libero_goal")[0]
    write_task_file(tmp_path / "data" / "libero_goal" / f"{task.name}_demo.hdf5", demos=4, length=8,
                    instruction=task.instruction)
    common = ["--suite", "libero-goal", "--preset", "smoke", "--tasks", "0", "--data-dir", str(tmp_path / "data"),
              "--epochs", "1"]
    assert main(["train", "tracks", *common, "--out", str(tmp_path / "tm")]) == 0
    assert (tmp_path / "tm" / "model.safetensors").is_file()
    assert main(["train", "policy", *common, "--agent", "atm", "--track-model", str(tmp_path / "tm"),
                 "--track-len", "4", "--action-horizon", "3", "--window", "2", "--out", str(tmp_path / "pol")]) == 0
    assert "atm policy: best validation loss" in capsys.readouterr().out
    model = json.loads((tmp_path / "pol" / "config.json").read_text())["model"]
    assert (model["action_horizon"], model["window"]) == (3, 2)
    assert main(["train", "policy", *common, "--agent", "bc", "--action-horizon", "0",
                 "--out", str(tmp_path / "pol3")]) == 2
    assert "--action-horizon must be >= 1" in capsys.readouterr().err
    assert main(["train", "policy", *common, "--agent", "bc", "--window", "0", "--out", str(tmp_path / "pol3")]) == 2
    assert "--window must be >= 1" in capsys.readouterr().err
    assert main(["train", "policy", *common, "--agent", "atm", "--track-model", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "pol2")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def _goal_task_file(tmp_path, on_robot=None):
    from atm_bench.envs.libero.suites import list_tasks

    task = list_tasks("libero_goal")[0]
    write_task_file(tmp_path / "data" / "libero_goal" / f"{task.name}_demo.hdf5", demos=4, length=8,
                    instruction=task.instruction, on_robot=on_robot)
    return ["--suite", "libero-goal", "--preset", "smoke", "--tasks", "0", "--data-dir", str(tmp_path / "data"),
            "--epochs", "1"]


def test_train_tracks_point_source_reaches_the_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))
    common = _goal_task_file(tmp_path, on_robot=[True, False, False, False, False])
    assert main(["train", "tracks", *common, "--point-source", "objects", "--out", str(tmp_path / "tm")]) == 0
    saved = json.loads((tmp_path / "tm" / "config.json").read_text())
    assert saved["training"]["point_source"] == "objects"
    assert main(["train", "tracks", *common, "--point-source", "arm"]) == 2
    assert "invalid choice: 'arm'" in capsys.readouterr().err


def test_train_tracks_point_source_on_tracks_without_robot_flags_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))
    common = _goal_task_file(tmp_path)
    assert main(["train", "tracks", *common, "--point-source", "robot", "--out", str(tmp_path / "tm")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not record which points lie on the robot" in err and "--tracker sim" in err


def test_run_passes_the_point_source_to_the_runner(monkeypatch, capsys):
    from atm_bench.errors import UserError

    seen = []

    class Stop:
        def __init__(self, config):
            seen.append(config)
            raise UserError("stopped before running")

    monkeypatch.setattr("atm_bench.bench.runner.Runner", Stop)
    assert main(["run", "--suite", "libero-goal", "--point-source", "robot"]) == 2
    assert main(["run", "--suite", "libero-goal"]) == 2
    assert [c.point_source for c in seen] == ["robot", "all"]


def test_data_generate_passes_the_expert_setup(tmp_path, monkeypatch, capsys):
    seen = []
    monkeypatch.setattr("atm_bench.data.generate.generate", lambda config, data_dir, workers: seen.append(config) or [])
    assert main(["data", "generate", "--suite", "libero-goal", "--tasks", "1", "--demos", "2", "--approach", "0.08",
                 "--perturb", "0.03", "--data-dir", str(tmp_path)]) == 0
    assert (seen[0].approach, seen[0].perturb, seen[0].tasks) == (0.08, 0.03, (1,))
    assert main(["data", "generate", "--suite", "libero-goal", "--tasks", "1", "--data-dir", str(tmp_path)]) == 0
    assert seen[1].approach is None and "approach" not in seen[1].identity()


def test_eval_caps_episodes_at_the_presets_horizon_unless_told(tmp_path, monkeypatch):
    from atm_bench.presets import get_preset

    seen = []
    monkeypatch.setattr("atm_bench.bench.evaluation.Evaluator.run", lambda self: seen.append(self.config) or [])
    monkeypatch.setattr("atm_bench.commands.eval.print_table", lambda records, out: None)
    base = ["eval", "--agent", "expert", "--suite", "libero-goal", "--tasks", "0"]
    assert main([*base, "--preset", "quick", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--preset", "quick", "--horizon", "300", "--out", str(tmp_path / "b")]) == 0
    assert main([*base, "--out", str(tmp_path / "c")]) == 0
    assert [c.horizon for c in seen] == [get_preset("quick").eval.horizon, 300, None]
    assert 0 < get_preset("quick").eval.horizon < 600 and get_preset("paper").eval.horizon is None


def _mask_only_checkpoint(directory, seed):
    """An (untrained) ATM checkpoint as `train policy --point-source robot --no-track-motion` saves it."""
    import dataclasses

    from atm_bench.atm.policy import TrackGuidedPolicy
    from atm_bench.atm.track_transformer import TrackTransformer
    from atm_bench.learning.training import save_checkpoint
    from atm_bench.presets import get_preset, with_point_source

    preset = with_point_source(get_preset("smoke"), "robot")
    policy = dataclasses.replace(preset.policy, track_motion=False)
    track_model = dataclasses.replace(preset.track_model, text_dim=384)
    training = {"track_training": preset.track_training, "policy_training": preset.policy_training}
    training = {k: dataclasses.asdict(dataclasses.replace(v, seed=seed)) for k, v in training.items()}
    save_checkpoint(TrackTransformer(track_model), directory / "track_model",
                    {"kind": "track_transformer", "preset": "smoke", "model": dataclasses.asdict(track_model),
                     "training": training["track_training"], "text_encoder": None})
    save_checkpoint(TrackGuidedPolicy(policy), directory / "policy",
                    {"kind": "policy", "preset": "smoke", "model": dataclasses.asdict(policy),
                     "training": training["policy_training"], "text_encoder": None})
    return directory


def _split(path, suite="libero_goal", labelled=7):
    import dataclasses

    from atm_bench.data.splits import SplitManifest, save_split

    manifest = SplitManifest(suite=suite, seed=0, labelled_per_task=labelled, val_fraction=0.1, videos_choice="all",
                             tasks=())
    return save_split(dataclasses.replace(manifest, manifest_sha256=manifest.compute_hash()), path)


def test_eval_records_the_checkpoints_training_so_tables_read_it_as_a_run(tmp_path, monkeypatch, capsys):
    from atm_bench.tables import ABLATION_SETTINGS, load_runs

    monkeypatch.setattr("atm_bench.bench.evaluation.Evaluator.run", lambda self: [])
    monkeypatch.setattr("atm_bench.commands.eval.print_table", lambda records, out: None)
    split = _split(tmp_path / "split.json")
    out = tmp_path / "eval"
    base = ["eval", "--agent", "atm", "--suite", "libero-goal", "--episodes", "2", "--preset", "smoke", "--out", str(out)]
    s0 = ["--checkpoint", str(_mask_only_checkpoint(tmp_path / "s0", 0))]
    assert main([*base, "--tasks", "0", "--seed", "0", *s0]) == 0
    assert "labelled" not in json.loads((out / "config.json").read_text())
    # seed 1 (its own training seed) and another task join the same directory, the split given now is kept
    s1 = ["--checkpoint", str(_mask_only_checkpoint(tmp_path / "s1", 1))]
    assert main([*base, "--tasks", "1", "--seed", "1", "--split", str(split), *s1]) == 0
    labelled_by_hand = {**json.loads((out / "config.json").read_text()), "ablation": "control"}
    (out / "config.json").write_text(json.dumps(labelled_by_hand))
    assert main([*base, "--tasks", "1", "--seed", "1", *s1]) == 0
    config = json.loads((out / "config.json").read_text())
    assert ABLATION_SETTINGS["variant"](config) == "control"
    assert (config["seeds"], config["tasks"], config["episodes_per_task"], config["labelled"]) == ([0, 1], [0, 1], 2, 7)
    assert config["preset_config"]["policy"]["track_motion"] is False and config["kind"] == "eval"
    assert ABLATION_SETTINGS["point source"](config) == "robot (mask only)"
    assert ABLATION_SETTINGS["labelled"](config) == "7"
    from atm_bench.bench.results import ResultsStore

    store = ResultsStore(out / "results.jsonl")
    for seed, task, k in [(0, 0, 0), *((1, t, k) for t in (0, 1) for k in (0, 1))]:
        store.append({"agent": "atm", "suite": "libero_goal", "task": task, "init_state": k, "seed": seed,
                      "protocol": "atm", "preset": "smoke", "horizon": 600, "success": True, "steps": 1, "seconds": 0})
    run = load_runs([out])[0]
    assert run.unfinished == {("atm", "libero_goal", 0): (1, 4)} and len(run.records) == 4  # 2 tasks x 2 episodes
    # what would mislabel the episodes already recorded is refused in one line, and changes nothing
    before = (out / "config.json").read_text()
    refused = {"another episodes_per_task": [*base, "--tasks", "0", "--episodes", "3", *s0],
               "another labelled": [*base, "--tasks", "0", "--split", str(_split(tmp_path / "s5.json", labelled=5)), *s0],
               "a split of libero_spatial": [*base, "--tasks", "0", "--split",
                                             str(_split(tmp_path / "sp.json", suite="libero_spatial")), *s0]}
    for message, argv in refused.items():
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert (out / "config.json").read_text() == before
    (out / "config.json").write_text(json.dumps({**config, "kind": None}))  # `atm-bench run`'s
    assert main([*base, "--tasks", "0", *s0]) == 2
    assert "is a run directory" in capsys.readouterr().err
