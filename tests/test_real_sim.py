"""The real-robot env on its simulated backend (robosuite's UR5e in MuJoCo): the declared
spaces, two-frame stacking, every safety limit driven into, deadlines, stopping on errors, and
`atm-bench record` with the scripted leader writing a LIBERO-layout file (resumable)."""

import numpy as np
import pytest

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def sim():
    from atm_bench.envs.real.arm import SimUR5eArm
    from atm_bench.envs.real.cameras import SimCameraRig

    arm = SimUR5eArm()
    rig = SimCameraRig(arm, height=48, width=64)  # non-square on purpose
    yield arm, rig
    rig.close()


def make_env(sim, **kw):
    from atm_bench.envs.real.env import RealRobotEnv
    from atm_bench.envs.real.safety import SafetyConfig

    arm, rig = sim
    kw.setdefault("safety", SafetyConfig(control_hz=10, max_joint_step=0.1))
    return RealRobotEnv(arm, rig.cameras(), "put the tomato into the pan", image_size=(48, 64), **kw)


def test_spaces_stacking_and_views(sim):
    env = make_env(sim, proprio=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and not info["is_success"]
    assert obs["agentview"].shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(obs["agentview"][0], obs["agentview"][1])  # first frame repeated
    assert not np.array_equal(obs["agentview"][1], obs["eye_in_hand"][1])  # two different cameras
    action = np.append(env.arm.home + np.array([0.1, 0, 0, 0, 0, 0]), -1.0)
    obs2, _, _, _, info = env.step(action)
    assert env.observation_space.contains(obs2)
    np.testing.assert_array_equal(obs2["agentview"][0], obs["agentview"][1])  # the window slid by one
    assert not np.array_equal(obs2["agentview"][1], obs2["agentview"][0])  # the arm moved in view
    for _ in range(3):
        obs2, _, _, _, _ = env.step(action)
    np.testing.assert_allclose(obs2["joint_states"][0], env.arm.home[0] + 0.1, atol=0.01)  # the servo tracked it
    assert env.action_space.contains(action.astype(np.float32))
    single = make_env(sim, stack=1)
    obs, _ = single.reset(seed=0)
    assert obs["agentview"].shape == (48, 64, 3) and single.observation_space.contains(obs)


def test_joint_limit_and_max_step_are_enforced(sim):
    from atm_bench.envs.real.safety import SafetyConfig

    upper = sim[0].home + 0.25
    env = make_env(sim, safety=SafetyConfig(max_joint_step=0.1, joint_upper=tuple(upper)))
    env.reset(seed=1)
    start = sim[0].read_joints()  # the filter limits steps from the measured pose after reset
    target = np.append(sim[0].home + 1.0, -1.0)  # far beyond the limit, far beyond one step
    applied = []
    for _ in range(5):
        _, _, _, _, info = env.step(target)
        applied.append(info["applied_action"][:6])
    steps = np.abs(np.diff(np.vstack([start, *applied]), axis=0))
    assert steps.max() <= 0.1 + 1e-9
    np.testing.assert_allclose(applied[-1], upper)  # reached the limit, not beyond
    assert np.all(env.arm.read_joints() <= upper + 0.01)
    report = info["safety"]
    assert report["step_clipped"] >= 2 and report["joint_clipped"] == 5


def test_workspace_limit_holds_the_tool_above_the_table(sim):
    from atm_bench.envs.real.kinematics import solve_ik
    from atm_bench.envs.real.safety import SafetyConfig

    arm = sim[0]
    floor = 0.15
    env = make_env(sim, safety=SafetyConfig(max_joint_step=0.1, workspace_lower=(-1, -1, floor),
                                            workspace_upper=(1, 1, 1)))
    env.reset(seed=2)
    pose = arm.tool_pose(arm.home)
    pose[2, 3] = 0.02  # straight down to the table, through the floor of the workspace
    low, err = solve_ik(arm.tool_pose, pose, arm.home, arm.joint_lower, arm.joint_upper)
    assert err < 1e-3
    for _ in range(15):
        _, _, _, _, info = env.step(np.append(low, -1.0))
    assert info["safety"]["workspace_held"] > 0
    assert arm.tool_pose(arm.read_joints())[2, 3] >= floor - 0.01


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_action_stops_the_arm(sim, bad):
    from atm_bench.envs.real.arm import ArmStopped
    from atm_bench.envs.real.safety import SafetyViolation

    env = make_env(sim)
    env.reset(seed=3)
    action = np.append(sim[0].home, 0.0)
    action[2] = bad
    with pytest.raises(SafetyViolation):
        env.step(action)
    assert sim[0].stopped
    held = sim[0].read_joints()
    with pytest.raises(ArmStopped):
        sim[0].command(sim[0].home, 0.0)
    sim[0].tick(0.3)  # stopped = holding where it was
    np.testing.assert_allclose(sim[0].read_joints(), held, atol=0.02)


@pytest.mark.parametrize("error", [RuntimeError("camera unplugged"), KeyboardInterrupt()])
def test_any_exception_in_a_step_leaves_the_arm_stopped(sim, error):
    env = make_env(sim)
    env.reset(seed=4)
    camera = env.cameras["eye_in_hand"]

    def broken():
        raise error

    camera.read = broken
    with pytest.raises(type(error)):
        env.step(np.append(sim[0].home, -1.0))
    assert sim[0].stopped
    del camera.read


def test_deadline_report_in_real_time(sim):
    from atm_bench.envs.real.safety import SafetyConfig

    # 10 kHz is beyond what rendering two cameras on a CPU can do: every tick misses its deadline
    env = make_env(sim, safety=SafetyConfig(control_hz=10000), realtime=True)
    env.reset(seed=5)
    for _ in range(4):
        _, _, _, _, info = env.step(np.append(sim[0].home, -1.0))
    assert info["safety"]["missed_deadlines"] == 4 and info["safety"]["max_late_ms"] > 0
    relaxed = make_env(sim, safety=SafetyConfig(control_hz=2), realtime=True)  # 500 ms per tick: on time
    relaxed.reset(seed=5)
    _, _, _, _, info = relaxed.step(np.append(sim[0].home, -1.0))
    assert info["safety"]["missed_deadlines"] == 0


def test_record_cli_with_scripted_leader_writes_libero_layout(tmp_path, capsys):
    from atm_bench.cli import main
    from atm_bench.data.episodes import EpisodeFile

    out = tmp_path / "tomato_demo.hdf5"
    args = ["record", "--robot", "sim-ur5e", "--task", "put the tomato into the pan", "--episodes", "1",
            "--teleop", "scripted", "--out", str(out), "--image-size", "32", "--max-steps", "25"]
    assert main(args) == 0
    assert "1 demos (0 from earlier runs" in capsys.readouterr().out
    args[args.index("--episodes") + 1] = "2"
    assert main(args) == 0  # resumes: keeps demo 0, records one more
    assert "2 demos (1 from earlier runs" in capsys.readouterr().out
    with EpisodeFile(out) as ef:
        ef.check()
        assert ef.instruction == "put the tomato into the pan" and len(ef) == 2
        ep = ef.read("demo_0")
        assert ep.obs["agentview_rgb"].shape[1:] == (32, 32, 3) and ep.obs["joint_states"].shape[1] == 6
        assert ep.actions.shape == (len(ep), 7) and len(ep) <= 25
        assert np.all(np.abs(np.diff(ep.actions[:, :6], axis=0)) <= 0.05 + 1e-9)  # the default step limit
        assert set(np.unique(ep.actions[:, 6])) <= {-1.0, 1.0}
        assert ef.header.env_args["robot"]["robot"] == "sim-ur5e" and ef.header.env_args["teleop"] == "scripted"
    assert main(["real", "track", str(out), "--points", "20", "--grid", "2"]) == 0
    from atm_bench.tracking.storage import read_tracks

    for view in ("agentview", "eye_in_hand"):
        assert read_tracks(out, "demo_1", view).tracks.shape[1] == 28
    capsys.readouterr()
    assert main(["record", "--robot", "ur5", "--task", "x", "--out", str(out), "--teleop", "scripted"]) == 2
    assert "--host" in capsys.readouterr().err


@pytest.mark.parametrize("robot", ["UR5e", "Panda"])
def test_scripted_pick_and_place_succeeds_and_success_needs_the_tomato_released(robot):
    """The scripted leader puts the tomato into the pan with both simulated arms (seeds 0-2), and
    the task check stays False while the tomato is still held over the pan."""
    from atm_bench.envs.real.arm import SimPandaArm, SimUR5eArm
    from atm_bench.envs.real.sim_scene import HOME_TOOL_POSITION
    from atm_bench.envs.real.teleop import SimPickPlaceLeader

    arm = {"UR5e": SimUR5eArm, "Panda": SimPandaArm}[robot]()
    assert arm.dof == (6 if robot == "UR5e" else 7)
    np.testing.assert_allclose(arm.tool_pose(arm.home)[:3, 3], HOME_TOOL_POSITION, atol=2e-3)
    leader = SimPickPlaceLeader()
    for seed in range(3):
        arm.reset(seed)
        leader.start(arm)
        held_over_pan, success = 0, False
        while True:
            cmd = leader.read()
            arm.command(cmd.joints, cmd.gripper)
            arm.tick(0.1)
            pos = arm.object_positions()
            if cmd.gripper == 1.0 and pos["tomato"][2] > 0.04 and np.linalg.norm(pos["tomato"][:2] - pos["pan"][:2]) < 0.05:
                held_over_pan += 1
                assert not arm.is_success()
            success = arm.is_success()
            if success or cmd.done:
                break
        assert success and held_over_pan > 0, (robot, seed)
