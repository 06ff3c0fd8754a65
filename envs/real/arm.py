"""Arms under joint-position control with a gripper: the interface, a UR arm through ur-rtde,
and the simulated arms (robosuite's models in MuJoCo): the UR5e that stands in for the real arm
in tests, and the Franka Panda whose videos serve the cross-embodiment experiment.

Units: joints in radians (6 for UR arms); the gripper command is a float in [0, 1] (0 open,
1 closed). `command` sets one servo target and returns at once; the control loop (env or
recorder) keeps the rate. `tick(dt)` lets time pass: a no-op on hardware (the controller runs
on its own clock), physics steps in simulation. After `stop()` the arm refuses commands until
`reset()`, so nothing moves it again by accident after an error.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import numpy as np

from atm_bench.envs.real.grippers import Gripper, make_gripper
from atm_bench.envs.real.kinematics import URKinematics


class ArmStopped(RuntimeError):
    """A command reached an arm that was stopped (after an error or Ctrl-C)."""


class Arm(ABC):
    """A joint-position-controlled arm with a gripper."""

    name: str = "arm"
    dof: int = 6
    simulated: bool = False
    joint_lower: np.ndarray
    joint_upper: np.ndarray
    home: np.ndarray

    def __init__(self) -> None:
        self._stopped = False
        self.gripper_target = 0.0

    @property
    def stopped(self) -> bool:
        return self._stopped

    @abstractmethod
    def read_joints(self) -> np.ndarray:
        """Measured joint positions (dof,)."""

    @abstractmethod
    def read_gripper(self) -> np.ndarray:
        """Measured gripper state (the arm's own dimension: finger joints in sim, opening on hardware)."""

    @abstractmethod
    def tool_pose(self, joints: np.ndarray) -> np.ndarray:
        """4x4 pose of the tool point in the robot's base frame for `joints` (forward kinematics)."""

    def command(self, joints: np.ndarray, gripper: float) -> None:
        """Stream one joint-position target and a gripper command (0 open .. 1 closed)."""
        if self._stopped:
            raise ArmStopped(f"{self.name} is stopped; reset() it before sending commands")
        self.gripper_target = float(np.clip(gripper, 0.0, 1.0))
        self._command(np.asarray(joints, dtype=np.float64), self.gripper_target)

    @abstractmethod
    def _command(self, joints: np.ndarray, gripper: float) -> None:
        ...

    def tick(self, dt: float) -> None:
        """Let `dt` seconds of control time pass (simulation steps physics; hardware does nothing)."""

    def stop(self) -> None:
        """Halt: hold the current position and refuse further commands until `reset()`."""
        self._stopped = True
        self._halt()

    @abstractmethod
    def _halt(self) -> None:
        ...

    def reset(self, seed: int | None = None) -> None:
        """Back to `home` (hardware: a slow blocking joint move; sim: a fresh randomised scene)."""
        self._stopped = False
        self._reset(seed)

    @abstractmethod
    def _reset(self, seed: int | None) -> None:
        ...

    def state_vector(self) -> np.ndarray:
        """What the dataset stores as `states`: joints + gripper on hardware; the MuJoCo state in sim."""
        return np.concatenate([self.read_joints(), self.read_gripper()])

    def close(self) -> None:
        if not self._stopped:
            self.stop()

    def describe(self) -> dict:
        return {"robot": self.name, "dof": self.dof, "simulated": self.simulated, "control": "joint_position",
                "joint_lower": self.joint_lower.tolist(), "joint_upper": self.joint_upper.tolist(),
                "home": self.home.tolist()}


class RateLimiter:
    """At most `max_hz` calls per second: `wait()` sleeps off what is left of the interval."""

    def __init__(self, max_hz: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / max_hz
        self.clock, self.sleep = clock, sleep
        self._last: float | None = None
        self.waited = 0

    def wait(self) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self.sleep(self.interval - (now - self._last))
            self.waited += 1
            now = self.clock()
        self._last = now


@dataclass(frozen=True)
class ServoConfig:
    """servoJ parameters. `dt` is the control period the targets arrive at; `max_hz` caps the
    command rate whatever the caller does (the UR controller runs at 125 Hz (CB3) / 500 Hz (e-Series))."""

    dt: float = 0.1
    lookahead: float = 0.1  # s, 0.03..0.2: larger = smoother, more lag
    gain: float = 300.0  # 100..2000
    max_hz: float = 125.0
    home_speed: float = 0.3  # rad/s for the blocking move home
    home_acceleration: float = 0.5


UR_JOINT_LIMITS = (np.full(6, -2 * np.pi), np.full(6, 2 * np.pi))
UR5_HOME = np.array([0.0, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])


class URArm(Arm):
    """A UR5/UR5e through ur-rtde (RTDE, port 30004): servoJ streaming, a gripper (Robotiq
    URCap socket or a digital output), joint limits of the hardware (+-2 pi; tighten them in
    `SafetyConfig`). Importing ur-rtde happens here, so the rest of the package runs without it."""

    name = "ur5"

    def __init__(self, host: str, model: str = "ur5", gripper: str = "robotiq", servo: ServoConfig = ServoConfig(),
                 home: np.ndarray | None = None, tool_offset: float = 0.15) -> None:
        super().__init__()
        from atm_bench.envs.real._optional import require

        rtde_control = require("rtde_control", "ur-rtde", "the UR arm")
        rtde_receive = require("rtde_receive", "ur-rtde", "the UR arm")
        self.name = model
        self.host = host
        self.servo = servo
        self.kinematics = URKinematics(model, tool_offset)
        self.joint_lower, self.joint_upper = (a.copy() for a in UR_JOINT_LIMITS)
        self.home = np.asarray(UR5_HOME if home is None else home, dtype=np.float64)
        self._recv = rtde_receive.RTDEReceiveInterface(host)
        self._ctrl = rtde_control.RTDEControlInterface(host)
        self._limiter = RateLimiter(servo.max_hz)
        self.gripper: Gripper = make_gripper(gripper, host)
        self._gripper_sent: float | None = None

    def read_joints(self) -> np.ndarray:
        return np.asarray(self._recv.getActualQ(), dtype=np.float64)

    def read_gripper(self) -> np.ndarray:
        return self.gripper.state()

    def tool_pose(self, joints: np.ndarray) -> np.ndarray:
        return self.kinematics.pose(joints)

    def _command(self, joints: np.ndarray, gripper: float) -> None:
        self._limiter.wait()
        self._ctrl.servoJ(joints.tolist(), 0.0, 0.0, self.servo.dt, self.servo.lookahead, self.servo.gain)
        closed = float(gripper >= 0.5)
        if closed != self._gripper_sent:  # the gripper is slow and binary here: send changes only
            self.gripper.set(closed)
            self._gripper_sent = closed

    def _halt(self) -> None:
        self._ctrl.servoStop()

    def _reset(self, seed: int | None) -> None:
        self._ctrl.moveJ(self.home.tolist(), self.servo.home_speed, self.servo.home_acceleration)
        self.gripper.set(0.0)
        self._gripper_sent = 0.0
        self.gripper_target = 0.0

    def close(self) -> None:
        super().close()
        self._ctrl.stopScript()
        self._ctrl.disconnect()
        self._recv.disconnect()
        self.gripper.close()


# -- simulation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """The simulated UR5e: PD gains of the joint servo (acceleration units, mass-matrix scaled,
    gravity compensated, like a position-controlled arm), and the scene's randomisation."""

    kp: float = 400.0
    damping_ratio: float = 1.0
    object_jitter: float = 0.06  # m, uniform +- around each object's nominal place


class SimArm(Arm):
    """An arm of `sim_scene.ROBOTS` on the table with a tomato, a pan and a cube
    (`sim_scene.build_scene`), simulated in MuJoCo. The same interface as `URArm`: joint-position
    targets (interpolated over each tick and tracked by a gravity-compensated PD servo) and a
    gripper command. `physics_data` / `physics_model` feed the simulated cameras."""

    simulated = True
    robot = "UR5e"

    def __init__(self, config: SimConfig = SimConfig()) -> None:
        super().__init__()
        from atm_bench.envs.libero.runtime import configure_environment

        configure_environment()  # headless GL must be chosen before mujoco is imported
        import mujoco

        from atm_bench.envs.real.sim_scene import build_scene

        self.config = config
        self.scene = build_scene(self.robot)
        self.dof = len(self.scene.arm_joints)
        self.physics_model = self.scene.model
        self.physics_data = mujoco.MjData(self.physics_model)
        self._scratch = mujoco.MjData(self.physics_model)
        self._mj = mujoco
        m = self.physics_model
        self.joint_lower = m.jnt_range[self.scene.arm_joints, 0].copy()
        self.joint_upper = m.jnt_range[self.scene.arm_joints, 1].copy()
        self.home = self.scene.home.copy()
        self._target = self.home.copy()
        self._previous_target = self.home.copy()
        self._full_mass = np.zeros((m.nv, m.nv))
        self._rng = np.random.default_rng(0)
        self._reset(0)

    # reading
    def read_joints(self) -> np.ndarray:
        return self.physics_data.qpos[self.scene.arm_qpos].copy()

    def read_gripper(self) -> np.ndarray:
        return self.physics_data.qpos[self.scene.gripper_qpos].copy()

    def tool_pose(self, joints: np.ndarray) -> np.ndarray:
        d = self._scratch
        d.qpos[:] = self.physics_data.qpos
        d.qpos[self.scene.arm_qpos] = joints
        self._mj.mj_kinematics(self.physics_model, d)
        return self.scene.world_to_base @ _site_pose(d, self.scene.tool_site)

    def state_vector(self) -> np.ndarray:
        d = self.physics_data
        return np.concatenate([[d.time], d.qpos, d.qvel])

    def body_poses(self) -> tuple[np.ndarray, np.ndarray]:
        """The model's body placements (the pan is moved in the model at reset): with the states,
        what a replay needs to put the scene back (exact tracks)."""
        return self.physics_model.body_pos.copy(), self.physics_model.body_quat.copy()

    def object_positions(self) -> dict[str, np.ndarray]:
        """Object centres in the robot's base frame (for scripted demos and success checks)."""
        out = {}
        for name, body in self.scene.object_bodies.items():
            p = np.append(self.physics_data.xpos[body], 1.0)
            out[name] = (self.scene.world_to_base @ p)[:3]
        return out

    # acting
    def _command(self, joints: np.ndarray, gripper: float) -> None:
        self._previous_target = self._target
        self._target = joints.copy()

    def tick(self, dt: float) -> None:
        """Step physics for `dt` s, the servo target moving linearly from the last target to the new one."""
        m, d, mj = self.physics_model, self.physics_data, self._mj
        steps = max(1, int(round(dt / m.opt.timestep)))
        kp = self.config.kp
        kd = 2.0 * self.config.damping_ratio * np.sqrt(kp)
        dofs, lo, hi = self.scene.arm_dofs, self.scene.arm_ctrl_lo, self.scene.arm_ctrl_hi
        scene = self.scene
        d.ctrl[scene.gripper_actuators] = scene.gripper_open + self.gripper_target * (scene.gripper_closed - scene.gripper_open)
        for i in range(steps):
            goal = self._previous_target + (self._target - self._previous_target) * (i + 1) / steps
            mj.mj_fullM(m, self._full_mass, d.qM)
            mass = self._full_mass[np.ix_(dofs, dofs)]
            err = goal - d.qpos[self.scene.arm_qpos]
            torque = mass @ (kp * err - kd * d.qvel[dofs]) + d.qfrc_bias[dofs]
            d.ctrl[self.scene.arm_actuators] = np.clip(torque, lo, hi)
            mj.mj_step(m, d)
        self._previous_target = self._target

    def _halt(self) -> None:
        """Hold where the arm is now."""
        self._target = self._previous_target = self.read_joints()

    def _reset(self, seed: int | None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mj, m, d = self._mj, self.physics_model, self.physics_data
        mj.mj_resetData(m, d)
        d.qpos[self.scene.arm_qpos] = self.home
        self.scene.place_objects(m, d, self._rng, self.config.object_jitter)
        mj.mj_forward(m, d)
        self._target = self._previous_target = self.home.copy()
        self.gripper_target = 0.0
        self.tick(0.2)  # let objects settle on the table under the holding servo

    def _touching(self, geoms_a, geoms_b) -> bool:
        d = self.physics_data
        for c in d.contact[:d.ncon]:
            if (c.geom1 in geoms_a and c.geom2 in geoms_b) or (c.geom2 in geoms_a and c.geom1 in geoms_b):
                return True
        return False

    def is_success(self) -> bool:
        """The tomato rests in the pan: its centre within the pan's radius, touching the pan and
        not the gripper (a tomato still carried over the pan does not count)."""
        pos = self.object_positions()
        tomato, pan = pos["tomato"], pos["pan"]
        if np.linalg.norm(tomato[:2] - pan[:2]) >= self.scene.pan_radius:
            return False
        m = self.physics_model
        tomato_geoms = set(np.flatnonzero(m.geom_bodyid == self.scene.object_bodies["tomato"]).tolist())
        pan_geoms = set(np.flatnonzero(m.geom_bodyid == self.scene.object_bodies["pan"]).tolist())
        return self._touching(tomato_geoms, pan_geoms) and not self._touching(tomato_geoms, self.scene.gripper_geoms)


class SimUR5eArm(SimArm):
    """robosuite's UR5e with a Robotiq 85 gripper: the stand-in for the real UR arm."""

    name = "sim-ur5e"
    robot = "UR5e"


class SimPandaArm(SimArm):
    """robosuite's Franka Panda (7 joints) with its gripper, in the same scene: the other
    embodiment whose videos feed the track transformer in the cross-embodiment experiment."""

    name = "sim-panda"
    robot = "Panda"


def _site_pose(data, site: int) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = data.site_xmat[site].reshape(3, 3)
    pose[:3, 3] = data.site_xpos[site]
    return pose
