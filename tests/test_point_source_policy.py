"""The point source of stage 2: the policy reads only the grid tracks of the robot's or the objects'
points (`PolicyConfig.point_source`), its on-robot mask from the demos' stored states in training
and from the live simulator in evaluation (`envs.wrappers.GridOnRobot`), and the settings that
carry it (presets, `train policy --point-source`, `run --point-source`, the ablation table)."""

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from atm_bench.atm.policy import TrackGuidedPolicy, policy_query_points
from atm_bench.errors import UserError
from atm_bench.presets import get_preset, training_view

ROBOT_POINTS = 5  # in the policy tests, grid points 0..4 of each view lie on the robot


def _cfg(**kw):
    return dataclasses.replace(get_preset("smoke").policy, **kw)


def _step(cfg, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.image_hw
    on_robot = torch.zeros(b, len(cfg.views), cfg.num_points, dtype=torch.bool)
    on_robot[:, :, :ROBOT_POINTS] = True
    return (torch.rand(b, 2, 3, h, w, generator=g) * 2 - 1, torch.rand(b, 2, cfg.num_points, cfg.track_len, 2, generator=g),
            torch.randn(b, 7, generator=g), torch.randn(b, 2, generator=g), on_robot)


def _encoded(policy, images, tracks, joint, gripper, on_robot):
    with torch.no_grad():
        step, late = policy.encode_step(images, tracks, joint, gripper, None, on_robot)
    return torch.cat([step.flatten(1), late], dim=1)


@pytest.mark.parametrize("source", ["objects", "robot"])
def test_a_point_source_policy_reads_only_its_sources_tracks(source):
    torch.manual_seed(0)
    policy = TrackGuidedPolicy(_cfg(point_source=source)).eval()
    images, tracks, joint, gripper, on_robot = _step(policy.cfg)
    policy.set_track_stats(tracks)
    out = _encoded(policy, images, tracks, joint, gripper, on_robot)
    masked = on_robot if source == "objects" else ~on_robot  # the points whose tracks it must not read
    motion = 0.3 * torch.linspace(0, 1, policy.cfg.track_len)[:, None]  # (L, 1): the point moves over time
    moved_masked = tracks + motion * masked[..., None, None]
    moved_kept = tracks + motion * (~masked)[..., None, None]
    assert torch.equal(_encoded(policy, images, moved_masked, joint, gripper, on_robot), out)
    assert (_encoded(policy, images, moved_kept, joint, gripper, on_robot) - out).abs().max() > 1e-4
    # a masked track is BC's input (zero displacement): the same as a still point
    still = torch.where(masked[..., None, None], tracks[:, :, :, :1].expand_as(tracks), tracks)
    assert torch.allclose(_encoded(policy, images, still, joint, gripper, on_robot), out, atol=1e-6)
    with pytest.raises(ValueError, match="pass `on_robot`"):
        policy.encode_step(images, tracks, joint, gripper)


def test_without_track_motion_the_policy_reads_the_mask_and_not_the_tracks():
    torch.manual_seed(0)
    policy = TrackGuidedPolicy(_cfg(point_source="robot", track_motion=False)).eval()
    images, tracks, joint, gripper, on_robot = _step(policy.cfg)
    policy.set_track_stats(tracks)
    out = _encoded(policy, images, tracks, joint, gripper, on_robot)
    other = torch.rand(tracks.shape, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_encoded(policy, images, other, joint, gripper, on_robot), out)
    assert torch.equal(_encoded(policy, images, None, joint, gripper, on_robot), out)  # so acting predicts none
    more = on_robot.clone()
    more[:, :, ROBOT_POINTS] = True  # the arm covers one more grid point
    assert (_encoded(policy, images, tracks, joint, gripper, more) - out).abs().max() > 1e-4
    with pytest.raises(UserError, match="use objects or robot, or give it the instruction"):
        _cfg(track_motion=False)
    zeroed = TrackGuidedPolicy(_cfg(track_motion=False, language=True)).eval()  # the paper's BC in ATM's network
    with torch.no_grad():
        text = torch.randn(images.shape[0], zeroed.cfg.text_dim)
        plain = zeroed.encode_step(images, None, joint, gripper, text)
        assert all(torch.equal(a, b) for a, b in zip(zeroed.encode_step(images, other, joint, gripper, text), plain))
    assert "track_motion" not in training_view(get_preset("smoke"), False)["policy"]  # stored keys hold


def test_the_default_policy_ignores_the_mask_bit_for_bit():
    torch.manual_seed(0)
    policy = TrackGuidedPolicy(_cfg()).eval()
    images, tracks, joint, gripper, on_robot = _step(policy.cfg)
    policy.set_track_stats(tracks)
    plain = _encoded(policy, images, tracks, joint, gripper, None)
    assert torch.equal(_encoded(policy, images, tracks, joint, gripper, on_robot), plain)
    assert torch.equal(_encoded(policy, images, tracks, joint, gripper, ~on_robot), plain)
    # the training forward carries the mask per step of a chunk
    chunk = [x[:, None].expand(-1, policy.cfg.window, *x.shape[1:]) for x in (images, tracks, joint, gripper, on_robot)]
    objects = TrackGuidedPolicy(dataclasses.replace(policy.cfg, point_source="objects")).eval()
    objects.load_state_dict(policy.state_dict())
    with torch.no_grad():
        assert torch.equal(policy(*chunk[:4]), policy(*chunk[:4], None, chunk[4]))
        assert not torch.equal(objects(*chunk[:4], None, chunk[4]), policy(*chunk[:4]))


def test_bc_keeps_no_point_source():
    from atm_bench.atm.stages import policy_config
    from atm_bench.presets import with_point_source

    objects = with_point_source(get_preset("smoke"), "objects")
    assert policy_config(objects, True, 384).point_source == "all"  # BC reads no tracks
    assert policy_config(objects, False, 384).point_source == "objects"


def test_default_training_view_has_no_policy_point_source():
    assert "point_source" not in training_view(get_preset("smoke"), True)["policy"]


# -- the agent and the env wrapper, without a simulator ---------------------------------------------


def _objects_agent():
    from atm_bench.atm.agent import ATMAgent
    from atm_bench.atm.track_transformer import TrackTransformer

    preset = get_preset("smoke")
    agent = ATMAgent(preset, progress=False, point_source="objects")
    assert agent.preset.policy.point_source == "objects" and agent.preset.track_training.point_source == "objects"
    agent.policy = TrackGuidedPolicy(agent.preset.policy).eval()
    agent.track_model = TrackTransformer(dataclasses.replace(preset.track_model, text_dim=384)).eval()
    agent._track_text = torch.zeros(1, 384)
    return agent


def test_the_agent_asks_for_the_grid_mask_and_names_the_fix_when_it_is_missing():
    from atm_bench.envs.wrappers import GridOnRobot

    agent = _objects_agent()
    rng = np.random.default_rng(0)
    obs = {"agentview": rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8),
           "eye_in_hand": rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8),
           "joint_states": rng.normal(size=(2, 7)), "gripper_states": rng.normal(size=(2, 2))}
    with pytest.raises(UserError, match="agentview_grid_on_robot.*atm-bench eval.*env_wrapper"):
        agent.act(obs)
    mask = np.zeros((2, 32), dtype=bool)
    actions = agent.act({**obs, "agentview_grid_on_robot": mask, "eye_in_hand_grid_on_robot": mask})
    assert actions.shape == (2, 7)
    wrapper = agent.env_wrapper()
    assert wrapper.func is GridOnRobot and wrapper.keywords["views"] == ("agentview", "eye_in_hand")
    np.testing.assert_array_equal(wrapper.keywords["points"], policy_query_points(32).numpy())
    assert agent.flops_per_step(obs)["macs"] > 0  # an observation of the plain env's space is counted too
    from atm_bench.atm.step_cost import measure_atm_step

    assert measure_atm_step(agent.track_model, agent.policy).policy_macs > 0  # the compute table's count
    agent.policy = TrackGuidedPolicy(get_preset("smoke").policy)
    assert agent.env_wrapper() is None  # "all": the plain env


def test_a_mask_only_agent_acts_without_running_the_track_model():
    agent = _objects_agent()
    agent.policy = TrackGuidedPolicy(dataclasses.replace(agent.policy.cfg, point_source="robot", track_motion=False))
    agent.policy.eval()
    rng = np.random.default_rng(0)
    mask = rng.random((2, 32)) < 0.3
    obs = {"agentview": rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8),
           "eye_in_hand": rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8),
           "joint_states": rng.normal(size=(2, 7)), "gripper_states": rng.normal(size=(2, 2)),
           "agentview_grid_on_robot": mask, "eye_in_hand_grid_on_robot": ~mask}
    images = agent._images(obs)
    joint, gripper = agent.proprio(obs)
    on_robot = agent._grid_on_robot(obs)
    with torch.no_grad():  # what acting fed the policy before: the tracks the track model predicts
        predicted = agent.policy.encode_step(images, _predicted(agent, images), joint, gripper, None, on_robot)

    def refuse(*args):
        raise AssertionError("a mask-only policy discards the tracks: the track model must not run")

    agent.track_model.predict = refuse
    with torch.no_grad():
        acting = agent.policy.encode_step(images, agent.predict_tracks(images), joint, gripper, None, on_robot)
    assert all(torch.equal(a, b) for a, b in zip(acting, predicted))
    actions = agent.act(obs)
    assert actions.shape == (2, 7) and agent.env_wrapper() is not None  # it still reads the arm's mask
    cost = agent.flops_per_step(obs)
    assert cost["paper_convention_macs"] == 0 and cost["policy_macs"] == cost["macs"] > 0
    agent.track_model = agent._steps = agent._late = None  # no stage 1 at all: the same actions, the same mask
    np.testing.assert_array_equal(agent.act(obs), actions)
    assert agent.env_wrapper() is not None and agent.video_overlay(0) is None


def _predicted(agent, images):
    from atm_bench.atm.stages import predict_grid_tracks

    n, v = images.shape[:2]
    tracks = predict_grid_tracks(agent.track_model, images.reshape(n * v, *images.shape[2:]),
                                 agent._track_text.expand(n * v, -1), agent.policy.cfg.num_points, batch=n * v)
    return tracks.reshape(n, v, *tracks.shape[1:])


def test_bc_ignores_the_point_source_and_the_runner_hands_it_to_atm(tmp_path, monkeypatch):
    from atm_bench.atm.agent import BCAgent
    from atm_bench.bench.runner import Runner, RunConfig

    assert BCAgent("smoke", point_source="objects").preset == get_preset("smoke")
    monkeypatch.chdir(tmp_path)
    runner = Runner(RunConfig(suite="libero-goal", agents=("atm", "bc"), preset="smoke", data_dir=tmp_path / "data",
                              point_source="objects"), progress=False)
    assert runner.preset.policy.point_source == "objects"
    atm, bc = runner.build_agent("atm", 0), runner.build_agent("bc", 0)
    assert atm.preset.policy.point_source == "objects"
    assert atm.resolved_config()["preset"]["policy"]["point_source"] == "objects"
    assert bc.resolved_config() == BCAgent("smoke", seed=0).resolved_config()  # BC's cache stays valid
    manifest = SimpleNamespace(manifest_sha256="m" * 64)
    plain = Runner(RunConfig(suite="libero-goal", agents=("atm",), preset="smoke", data_dir=tmp_path / "data",
                             out=tmp_path / "plain"), progress=False)
    assert plain._train_key("atm", 0, plain.build_agent("atm", 0), manifest, "t") != \
        runner._train_key("atm", 0, atm, manifest, "t")


def test_train_policy_point_source_reaches_the_policy_overrides(tmp_path, monkeypatch, capsys):
    from atm_bench.cli import main
    from atm_bench.envs.libero.suites import list_tasks

    from atm_synthetic import write_task_file

    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))
    task = list_tasks("libero_goal")[0]
    write_task_file(tmp_path / "data" / "libero_goal" / f"{task.name}_demo.hdf5", demos=4, length=8,
                    instruction=task.instruction)
    seen = []

    def fake_train_policy(preset, data, out, **kwargs):
        seen.append(kwargs["policy_overrides"])
        return SimpleNamespace(best_val=0.0, best_epoch=1, epochs_run=1, seconds=0.0)

    monkeypatch.setattr("atm_bench.atm.stages.train_policy", fake_train_policy)
    common = ["train", "policy", "--suite", "libero-goal", "--preset", "smoke", "--tasks", "0",
              "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "pol")]
    assert main([*common, "--agent", "atm", "--point-source", "objects"]) == 0
    assert main([*common, "--agent", "atm"]) == 0
    assert main([*common, "--agent", "atm", "--point-source", "robot", "--no-track-motion"]) == 0
    assert seen == [{"point_source": "objects"}, {}, {"point_source": "robot", "track_motion": False}]
    assert main([*common, "--agent", "bc", "--point-source", "robot"]) == 2
    assert "bc reads none" in capsys.readouterr().err
    assert main([*common, "--agent", "atm", "--no-track-motion"]) == 2
    assert "give --point-source objects or robot" in capsys.readouterr().err
    assert main([*common, "--agent", "atm", "--no-track-motion", "--instruction"]) == 0  # constant tracks
    assert seen[-1] == {"language": True, "track_motion": False}


def test_the_ablation_table_labels_both_stages_point_sources():
    from atm_bench.tables import ABLATION_SETTINGS
    from atm_bench.presets import with_point_source

    label = ABLATION_SETTINGS["point source"]
    preset = get_preset("smoke")
    assert label({"preset_config": preset.to_dict()}) == "all"
    assert label({"preset_config": with_point_source(preset, "objects").to_dict()}) == "objects"
    stage1_only = dataclasses.replace(preset, track_training=with_point_source(preset, "robot").track_training)
    assert label({"preset_config": stage1_only.to_dict()}) == "stage 1 robot, policy all"
    robot = with_point_source(preset, "robot")
    control = dataclasses.replace(robot, policy=dataclasses.replace(robot.policy, track_motion=False))
    assert label({"preset_config": control.to_dict()}) == "robot (mask only)"
    informed = dataclasses.replace(control, policy=dataclasses.replace(control.policy, language=True))
    assert label({"preset_config": informed.to_dict()}) == "robot (mask + instruction)"
    without_stage1 = {k: v for k, v in informed.to_dict().items() if k not in ("track_model", "track_training")}
    assert label({"preset_config": without_stage1}) == "robot (mask + instruction)"  # `atm-bench eval`'s, no stage 1
    zeroed = dataclasses.replace(preset, policy=dataclasses.replace(preset.policy, track_motion=False, language=True))
    assert label({"preset_config": zeroed.to_dict()}) == "all (constant tracks + instruction)"
    assert label({"preset_config": json.loads(json.dumps({"track_training": {"point_source": "objects"}}))}) == "objects"


def test_the_on_robot_masks_are_replayed_once_per_training_and_kept_while_their_demos_are(tmp_path, monkeypatch):
    """A resumed point-source training reads the masks it stored instead of replaying every demo in
    the simulator again; other demos (a longer one, another file) make them again."""
    from atm_bench.atm import stages
    from atm_bench.learning.frames import DemoRef
    from atm_bench.tracking import annotate

    replays = []

    class Scenes:
        def close(self):
            pass

    def table(refs, cfg, scenes):
        replays.append(len(refs))
        return {d: np.full((ref.length, len(cfg.views), cfg.num_points), d % 2 == 0) for d, ref in enumerate(refs)}

    monkeypatch.setattr(annotate, "SimScenes", Scenes)
    monkeypatch.setattr(stages, "robot_table", table)
    demo_file = tmp_path / "task_demo.hdf5"
    demo_file.write_bytes(b"demos")
    cfg = get_preset("smoke").policy
    splits = {"train": [DemoRef(demo_file, "demo_0", 5), DemoRef(demo_file, "demo_1", 4)], "val": []}
    path = tmp_path / "policy" / stages.ROBOT_TABLES
    first = stages.robot_tables(splits, cfg, path)
    again = stages.robot_tables(splits, cfg, path)
    assert replays == [2, 0] and path.exists()  # made once (train, then the empty val), then read
    assert again.keys() == first.keys() and all(np.array_equal(again["train"][d], first["train"][d]) for d in (0, 1))
    assert again["val"] == {} and again["train"][1].shape == (4, len(cfg.views), cfg.num_points)
    longer = {"train": [DemoRef(demo_file, "demo_0", 6), DemoRef(demo_file, "demo_1", 4)], "val": []}
    assert stages.robot_tables(longer, cfg, path)["train"][0].shape[0] == 6 and replays == [2, 0, 2, 0]
    assert stages.robot_tables(longer, cfg, path)["train"][0].shape[0] == 6 and replays == [2, 0, 2, 0]


def test_the_grid_wrapper_declares_its_observations():
    import gymnasium as gym
    from gymnasium import spaces

    from atm_bench.envs.wrappers import GridOnRobot

    class Env(gym.Env):  # a stand-in: the wrapper's spaces need no simulator
        observation_space = spaces.Dict({"joint_states": spaces.Box(-1, 1, (7,))})
        action_space = spaces.Box(-1, 1, (7,))

    wrapped = GridOnRobot(Env(), policy_query_points(8).numpy(), views=("eye_in_hand",))
    assert wrapped.observation_space["eye_in_hand_grid_on_robot"] == spaces.Box(0, 1, (8,), bool)
    assert set(wrapped.observation_space) == {"joint_states", "eye_in_hand_grid_on_robot"}
    with pytest.raises(ValueError, match="unknown camera view 'wrist'"):
        GridOnRobot(Env(), policy_query_points(8).numpy(), views=("wrist",))


# -- the simulator: the training mask equals the evaluation mask; a smoke training runs ---------------


@pytest.fixture(scope="module")
def sim_task_file(tmp_path_factory):
    """A short scripted demo of libero_goal task 0 recorded in the simulator at 32x32 (fast
    rendering, recorded in the file as generation records it), and the env that recorded it."""
    from tracking_episodes import make_task_file

    from atm_bench.envs.libero.env import LiberoEnv

    env = LiberoEnv("libero_goal", 0, image_size=32, render_quality="fast")
    root = tmp_path_factory.mktemp("point-source")
    path = root / "libero_goal" / f"{env.spec_task.name}_demo.hdf5"
    path.parent.mkdir()
    make_task_file(env, path, demos=1, steps=12, env_args={"atm_bench": {"render_quality": "fast"}})
    yield env, path
    env.close()


@pytest.mark.sim
def test_the_training_mask_from_stored_states_equals_the_wrappers_at_the_same_states(sim_task_file):
    from atm_bench.atm.stages import robot_table
    from atm_bench.data.episodes import EpisodeFile
    from atm_bench.envs.wrappers import GridOnRobot
    from atm_bench.learning.frames import demo_refs
    from atm_bench.tracking.annotate import SimScenes

    env, path = sim_task_file
    cfg = get_preset("smoke").policy
    scenes = SimScenes()
    try:
        table = robot_table(demo_refs([(path, ["demo_0"], 0)]), cfg, scenes)[0]
    finally:
        scenes.close()
    assert table.shape == (12, 2, 32) and table.dtype == bool
    assert table.any() and not table.all()  # the arm covers some grid points, not all
    with EpisodeFile(path) as f:
        episode = f.read("demo_0")
    wrapped = GridOnRobot(env, policy_query_points(32).numpy(), views=cfg.views)
    env.set_body_poses(np.concatenate([episode.attrs["body_pos"], episode.attrs["body_quat"]], axis=1))
    for t, state in enumerate(episode.states):
        env.set_state(state)
        live = wrapped.grid_on_robot()
        for v, view in enumerate(cfg.views):
            np.testing.assert_array_equal(live[f"{view}_grid_on_robot"], table[t, v], err_msg=f"step {t} {view}")
    # the wrapper adds the mask to the observations of reset and step, as declared
    obs, _ = wrapped.reset(seed=0, options={"init_state": 0})
    obs = wrapped.step(np.zeros(7))[0]
    assert wrapped.observation_space.contains({k: obs[k] for k in wrapped.observation_space})


@pytest.mark.sim
@pytest.mark.parametrize("source,motion,stage1", [("objects", True, True), ("robot", False, True), ("robot", False, False)])
def test_a_smoke_policy_on_one_point_source_trains(sim_task_file, tmp_path, monkeypatch, source, motion, stage1):
    """On `objects`, and on `robot` without track motion (the control), which discards the tracks
    and so never has the track model predict them, and needs none: its mask comes from the states."""
    from atm_bench.atm.stages import load_policy, train_policy
    from atm_bench.atm.track_transformer import TrackTransformer
    from atm_bench.learning.frames import StageData, demo_refs
    from atm_bench.learning.training import save_checkpoint
    from atm_bench.presets import with_point_source

    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    _, path = sim_task_file
    preset = with_point_source(get_preset("smoke"), source)
    preset = dataclasses.replace(preset, policy=dataclasses.replace(preset.policy, track_motion=motion))
    track_cfg = dataclasses.replace(preset.track_model, text_dim=384)  # the packaged MiniLM's width
    save_checkpoint(TrackTransformer(track_cfg), tmp_path / "tracks",
                    {"kind": "track_transformer", "model": dataclasses.asdict(track_cfg), "text_encoder": None})
    if not motion:
        def refuse(*args, **kwargs):
            raise AssertionError("a mask-only policy discards the tracks: the track model must not run")

        monkeypatch.setattr(TrackTransformer, "predict", refuse)
    refs = demo_refs([(path, ["demo_0"], 0)])
    data = StageData(train=refs, val=refs, instructions=["put the bowl somewhere"])
    result = train_policy(preset, data, tmp_path / "policy", track_model_dir=tmp_path / "tracks" if stage1 else None,
                          epochs=1, progress=False)
    assert result.epochs_run == 1 and np.isfinite(result.history[-1]["train_loss"])
    policy, config = load_policy(tmp_path / "policy")
    assert policy.cfg.point_source == source and config["model"]["point_source"] == source
    assert policy.cfg.track_motion == motion
    if not stage1:  # the agent loads it without a stage 1 and still asks the env for the arm's mask
        from atm_bench.atm.agent import ATMAgent

        agent = ATMAgent(preset, progress=False)
        agent._load_models(tmp_path / "policy", None)
        assert agent.track_model is None and agent.env_wrapper() is not None
        with pytest.raises(UserError, match="needs a trained track transformer"):  # with motion it needs one
            train_policy(with_point_source(get_preset("smoke"), source), data, tmp_path / "moving", progress=False)
