"""Real-robot stack without hardware or simulator: kinematics, the safety filter, the rate
keeper, the stop guard, leaders, the UR arm and Robotiq gripper against fakes, missing extras."""

import socket
import sys
import threading
import types

import numpy as np
import pytest

from atm_bench.envs.real.arm import Arm, ArmStopped, RateLimiter
from atm_bench.envs.real.kinematics import URKinematics, solve_ik
from atm_bench.envs.real.safety import RateKeeper, SafetyConfig, SafetyFilter, SafetyViolation, StopOnExit
from atm_bench.errors import UserError


class FakeArm(Arm):
    """A UR5e that moves instantly to each target (kinematics only)."""

    name = "fake"

    def __init__(self):
        super().__init__()
        self.kin = URKinematics("ur5e")
        self.joint_lower, self.joint_upper = np.full(6, -np.pi), np.full(6, np.pi)
        self.home = np.array([0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])
        self.q = self.home.copy()
        self.sent = []

    def read_joints(self):
        return self.q.copy()

    def read_gripper(self):
        return np.array([self.gripper_target])

    def tool_pose(self, joints):
        return self.kin.pose(joints)

    def _command(self, joints, gripper):
        self.q = joints.copy()
        self.sent.append(joints.copy())

    def _halt(self):
        pass

    def _reset(self, seed):
        self.q = self.home.copy()


def test_ur5e_forward_kinematics_zero_pose_matches_published_dh():
    p = URKinematics("ur5e").pose(np.zeros(6))[:3, 3]
    # at q = 0 the flange sits at (a2 + a3, -(d4 + d6), d1 - d5)
    np.testing.assert_allclose(p, [-0.425 - 0.3922, -(0.1333 + 0.0996), 0.1625 - 0.0997], atol=1e-9)


def test_ik_recovers_a_reachable_pose():
    kin = URKinematics("ur5")
    q_true = np.array([0.3, -1.2, 1.4, -1.7, -1.5, 0.2])
    q, err = solve_ik(kin.pose, kin.pose(q_true), q_true + 0.1, np.full(6, -6.3), np.full(6, 6.3))
    assert err < 1e-3
    np.testing.assert_allclose(kin.pose(q)[:3, 3], kin.pose(q_true)[:3, 3], atol=1e-3)


def _filter(**kw):
    arm = FakeArm()
    f = SafetyFilter(SafetyConfig(**kw), arm)
    f.reset(arm.read_joints())
    return arm, f


def test_safety_clips_joint_limits_and_step_and_holds_outside_workspace():
    arm, f = _filter(max_joint_step=0.1, joint_upper=(1.0,) * 6)
    target = arm.home.copy()
    target[0] = 2.5  # beyond both the configured limit (1.0) and the step limit
    safe, g = f(target, 1.7)
    assert g == 1.0 and safe[0] == pytest.approx(0.1) and f.report.step_clipped == 1
    assert f.report.joint_clipped == 1
    for _ in range(20):
        safe, _ = f(target, 0.0)
    assert safe[0] == pytest.approx(1.0)  # reached the configured limit, never beyond
    # a workspace that excludes everything below z = 0.5 m holds the previous target
    arm, f = _filter(max_joint_step=0.5, workspace_lower=(-1, -1, 0.5))
    before = f.previous.copy()
    down = arm.home.copy()
    down[1] += 0.4
    safe, _ = f(down, 0.0)
    np.testing.assert_array_equal(safe, before)
    assert f.report.workspace_held == 1 and not arm.stopped


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_actions_stop_the_arm(bad):
    arm, f = _filter()
    target = arm.home.copy()
    target[3] = bad
    with pytest.raises(SafetyViolation, match="non-finite"):
        f(target, 0.0)
    assert arm.stopped and f.report.nonfinite == 1
    with pytest.raises(ArmStopped):
        arm.command(arm.home, 0.0)
    arm.reset()
    arm.command(arm.home, 0.0)  # reset re-arms it


def test_strict_mode_stops_instead_of_correcting():
    arm, f = _filter(strict=True, max_joint_step=0.05)
    target = arm.home.copy()
    target[0] += 0.2
    with pytest.raises(SafetyViolation, match="joint step"):
        f(target, 0.0)
    assert arm.stopped


def test_rate_keeper_sleeps_on_time_and_counts_missed_deadlines():
    now = [0.0]
    slept = []

    def sleep(dt):
        slept.append(dt)
        now[0] += dt

    keeper = RateKeeper(10.0, slack=0.2, clock=lambda: now[0], sleeper=sleep)
    keeper.start()
    now[0] += 0.03  # a fast tick: sleeps the rest of the 100 ms
    keeper.wait()
    assert slept[-1] == pytest.approx(0.07) and keeper.report.missed_deadlines == 0
    now[0] += 0.25  # a slow tick: 150 ms late
    keeper.wait()
    assert keeper.report.missed_deadlines == 1 and keeper.report.max_late_ms == pytest.approx(150.0)
    now[0] += 0.05  # back on schedule, re-anchored: no burst of catch-up
    keeper.wait()
    assert keeper.report.missed_deadlines == 1 and slept[-1] == pytest.approx(0.05)


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_stop_on_exit_stops_the_arm_on_errors_and_ctrl_c(error):
    arm = FakeArm()
    with pytest.raises(type(error)):
        with StopOnExit(arm):
            arm.command(arm.home, 0.0)
            raise error
    assert arm.stopped
    arm.reset()
    with StopOnExit(arm):
        pass
    assert arm.stopped  # a normal exit stops it too


def test_safety_config_json_rejects_unknown_keys(tmp_path):
    path = tmp_path / "safety.json"
    path.write_text('{"max_joint_step": 0.02, "workspace_lower": [-0.5, -0.5, 0.02]}')
    cfg = SafetyConfig.from_json(path)
    assert cfg.max_joint_step == 0.02 and cfg.workspace_lower == (-0.5, -0.5, 0.02)
    path.write_text('{"max_step": 1}')
    with pytest.raises(UserError, match="unknown safety keys"):
        SafetyConfig.from_json(path)


def test_gello_calibration_round_trip_and_leader():
    from atm_bench.envs.real.teleop import GelloConfig, GelloLeader, calibrate_offsets

    known = np.array([0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])
    signs = (1, 1, -1, 1, 1, 1)
    true_offsets = np.array([np.pi / 2, 0, np.pi, -np.pi / 2, 0, 2 * np.pi])
    raw = true_offsets + np.asarray(signs) * known + 0.01  # 0.01 rad of assembly slack, snapped away
    offsets = calibrate_offsets(raw, known, signs)
    np.testing.assert_allclose(offsets, true_offsets, atol=1e-9)
    cfg = GelloConfig(signs=signs, offsets=offsets, gripper_open=0.2, gripper_closed=1.0)

    class Bus:
        def read(self):
            return np.append(raw, 0.6)

        def close(self):
            pass

    keys = iter([[], ["\n"]])
    leader = GelloLeader(cfg, keys=lambda: next(keys), bus=Bus())
    cmd = leader.read()
    np.testing.assert_allclose(cmd.joints, known + 0.01 * np.asarray(signs), atol=1e-9)
    assert cmd.gripper == pytest.approx(0.5) and not cmd.done
    assert leader.read().done


def test_keyboard_leader_jogs_and_ends():
    from atm_bench.envs.real.teleop import KeyboardLeader

    presses = iter([["q", "q", "s", " "], ["x"]])
    leader = KeyboardLeader(keys=lambda: next(presses), step=0.1)
    arm = FakeArm()
    leader.start(arm)
    cmd = leader.read()
    np.testing.assert_allclose(cmd.joints - arm.home, [0.2, -0.1, 0, 0, 0, 0], atol=1e-12)
    assert cmd.gripper == 1.0 and not cmd.done
    cmd = leader.read()
    assert cmd.done and cmd.discard


def test_scripted_leader_respects_its_speed():
    from atm_bench.envs.real.teleop import ScriptedLeader, Waypoint

    arm = FakeArm()
    leader = ScriptedLeader([Waypoint(arm.home + 0.3, 1.0, hold=2)], speed=0.05)
    leader.start(arm)
    previous, cmds = arm.home, []
    while True:
        cmd = leader.read()
        cmds.append(cmd)
        assert np.max(np.abs(cmd.joints - previous)) <= 0.05 + 1e-12
        previous = cmd.joints
        if cmd.done:
            break
    assert len(cmds) == 6 + 3 and cmds[-1].gripper == 1.0 and cmds[5].gripper == 0.0


def test_rate_limiter_spaces_calls():
    now = [0.0]
    limiter = RateLimiter(100.0, clock=lambda: now[0], sleep=lambda dt: now.__setitem__(0, now[0] + dt))
    limiter.wait()
    now[0] += 0.004
    limiter.wait()
    assert now[0] == pytest.approx(0.01) and limiter.waited == 1


def _fake_rtde(monkeypatch):
    calls = []

    class Control:
        def __init__(self, host):
            calls.append(("connect", host))

        def servoJ(self, q, v, a, dt, lookahead, gain):
            calls.append(("servoJ", list(q), dt))

        def servoStop(self):
            calls.append(("servoStop",))

        def moveJ(self, q, speed, acc):
            calls.append(("moveJ", list(q)))

        def stopScript(self):
            calls.append(("stopScript",))

        def disconnect(self):
            pass

    class Receive:
        def __init__(self, host):
            pass

        def getActualQ(self):
            return [0.0, -1.57, 1.57, -1.57, -1.57, 0.0]

        def disconnect(self):
            pass

    monkeypatch.setitem(sys.modules, "rtde_control", types.SimpleNamespace(RTDEControlInterface=Control))
    monkeypatch.setitem(sys.modules, "rtde_receive", types.SimpleNamespace(RTDEReceiveInterface=Receive))
    return calls


def test_ur_arm_streams_servoj_and_stops(monkeypatch):
    from atm_bench.envs.real.arm import ServoConfig, URArm

    calls = _fake_rtde(monkeypatch)
    arm = URArm("10.0.0.2", model="ur5e", gripper="none", servo=ServoConfig(dt=0.1, max_hz=1000))
    arm.reset()
    q = arm.read_joints()
    arm.command(q, 1.0)
    assert ("servoJ", q.tolist(), 0.1) in calls and ("moveJ", arm.home.tolist()) in calls
    assert arm.read_gripper()[0] == 1.0
    arm.close()
    assert ("servoStop",) in calls and ("stopScript",) in calls and arm.stopped


def test_missing_hardware_extra_names_it(monkeypatch):
    from atm_bench.envs.real.arm import URArm
    from atm_bench.envs.real.cameras import RealSenseCamera
    from atm_bench.envs.real.teleop import DynamixelBus

    for module in ("rtde_control", "rtde_receive", "pyrealsense2", "dynamixel_sdk"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    for make, package in ((lambda: URArm("10.0.0.2"), "ur-rtde"), (lambda: RealSenseCamera("123"), "pyrealsense2"),
                          (lambda: DynamixelBus("/dev/null", 57600, [1]), "dynamixel-sdk")):
        with pytest.raises(UserError, match=rf"'{package}'.*pip install 'atm-bench\[real\]'"):
            make()


def test_robotiq_socket_protocol():
    from atm_bench.envs.real.grippers import RobotiqSocketGripper

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    seen = []

    def serve():
        conn, _ = server.accept()
        pos = 0
        with conn, conn.makefile("rwb") as f:
            for line in f:
                cmd = line.decode().strip()
                seen.append(cmd)
                if cmd.startswith("SET POS"):
                    pos = int(cmd.split()[-1])
                f.write(f"POS {pos}\n".encode() if cmd == "GET POS" else b"ack\n")
                f.flush()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    gripper = RobotiqSocketGripper("127.0.0.1", server.getsockname()[1])
    gripper.set(1.0)
    assert gripper.state()[0] == 1.0
    gripper.set(0.0)
    assert gripper.state()[0] == 0.0
    gripper.close()
    server.close()
    assert seen[:2] == ["SET ACT 1", "SET GTO 1"] and "SET POS 255" in seen


def test_prepare_frame_crops_to_aspect_without_squashing():
    from atm_bench.envs.real.env import prepare_frame

    frame = np.zeros((48, 96, 3), np.uint8)
    frame[:, 24:72] = 255  # the centre square is white, the sides black
    out = prepare_frame(frame, (16, 16))
    assert out.shape == (16, 16, 3) and out.min() == 255
    tall = prepare_frame(np.zeros((100, 40, 3), np.uint8), (20, 10))
    assert tall.shape == (20, 10, 3)


def test_mixture_weights_give_each_source_its_share():
    from atm_bench.learning.frames import DemoRef
    from atm_bench.atm.mixture import sample_weights

    demos = [DemoRef("a", "demo_0", 10, source="robot"), DemoRef("b", "demo_0", 90, source="human")]
    index = [(0, 0, t) for t in range(10)] + [(1, 0, t) for t in range(90)]
    w = sample_weights(index, demos, {"robot": 3.0, "human": 1.0})
    assert w[:10].sum() == pytest.approx(0.75) and w[10:].sum() == pytest.approx(0.25)


def test_joint_step_actions_invert_the_wrapper():
    """Recorded absolute targets -> normalised steps, and the env wrapper's way back (previous
    target + step x max_joint_step) gives the recorded targets again; the gripper passes through."""
    import gymnasium as gym

    from atm_bench.envs.real.joint_actions import JointStepActions, step_actions

    class TargetEnv(gym.Env):
        """Applies the targets as given (a stand-in for RealRobotEnv's filter within its limits)."""

        def __init__(self):
            self.arm, self.safety_config = FakeArm(), SafetyConfig(max_joint_step=0.05)
            self.action_space = gym.spaces.Box(-10, 10, (7,), np.float64)

        def reset(self, *, seed=None, options=None):
            self.arm.q = self.arm.home.copy()
            return {}, {}

        def step(self, action):
            self.arm.q = np.asarray(action[:6], dtype=np.float64)
            return {}, 0.0, False, False, {"applied_action": np.asarray(action, dtype=np.float64)}

    rng = np.random.default_rng(0)
    home = FakeArm().home
    joints = home + np.cumsum(rng.uniform(-0.05, 0.05, (20, 6)), axis=0)
    targets = np.concatenate([joints, rng.choice([-1.0, 1.0], (20, 1))], axis=1)
    steps = step_actions(targets, home, 0.05)
    assert steps.shape == (20, 7) and np.abs(steps).max() <= 1.0
    env = JointStepActions(TargetEnv())
    assert env.action_space.shape == (7,) and env.max_joint_step == 0.05
    env.reset()
    applied = [env.step(a)[4]["applied_action"] for a in steps]
    np.testing.assert_allclose(np.stack(applied), targets, atol=1e-12)
    with pytest.raises(ValueError, match="7 values"):
        env.step(np.zeros(6))
    far = targets.copy()
    far[3, 0] += 1.0  # a jump beyond one step is clipped to a full step
    assert step_actions(far, home, 0.05)[3, 0] == 1.0
