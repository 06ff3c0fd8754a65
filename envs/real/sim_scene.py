"""The simulated table scene: an arm from robosuite 1.4 (the UR5e with a Robotiq 85, or the
Franka Panda with its own gripper, for cross-embodiment videos) on robosuite's table arena, a
tomato (a short red cylinder), a pan (flat cylinder) and a cube, compiled with MuJoCo directly (no
robosuite environment or controller: the arm is driven like the real one, by joint targets).
Both arms stand on the same spot, so the objects and the front camera are the same for both.
Cameras come with the arena and the robot: `agentview` (front), `robot0_eye_in_hand` (wrist).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field

import numpy as np

TABLE_SIZE = (1.0, 0.8, 0.05)
TABLE_HEIGHT = 0.8
# The arm is bolted onto the table's back edge (as real UR5 set-ups are), so its base frame's
# z = 0 is the table top. Nominal object places on the table (world x, y).
BASE_XY = (-0.42, 0.0)
NOMINAL = {"tomato": (0.0, -0.15), "pan": (0.02, 0.16), "cube": (0.14, -0.02)}
PAN_RADIUS = 0.08
# Tool 0.42 m in front of the base, 0.30 m above the table, pointing down (solved once by IK).
HOME = np.array([-0.3249, -1.7901, 1.8791, -1.6599, -1.5707, -0.3249])
HOME_TOOL_POSITION = (0.42, 0.0, 0.30)  # in the base frame; the Panda's home is solved for it
CAMERAS = {"agentview": "agentview", "eye_in_hand": "robot0_eye_in_hand"}


@dataclass(frozen=True)
class RobotSpec:
    """What differs between the simulated arms: robosuite's model and gripper, MuJoCo names of the
    arm's joints and torque actuators and of the gripper's, and the gripper's actuator commands
    open and closed (the Robotiq's are forces, its ctrlrange [0, 0.8]; the Panda's finger positions in m)."""

    model: str
    gripper: str
    joints: tuple[str, ...]
    actuators: tuple[str, ...]
    gripper_joints: tuple[str, ...]
    gripper_actuators: tuple[str, ...]
    gripper_open: tuple[float, ...]
    gripper_closed: tuple[float, ...]
    home: tuple[float, ...] | None  # None: solved by IK for HOME_TOOL_POSITION from robosuite's init pose


ROBOTS = {
    "UR5e": RobotSpec(
        "UR5e", "Robotiq85Gripper",
        tuple(f"robot0_{j}" for j in ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
                                      "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")),
        tuple(f"robot0_torq_j{i}" for i in range(1, 7)),
        ("gripper0_finger_joint", "gripper0_right_outer_knuckle_joint"),
        ("gripper0_finger_1", "gripper0_finger_2"), (0.0, 0.0), (0.8, 0.8), tuple(HOME)),
    "Panda": RobotSpec(
        "Panda", "PandaGripper", tuple(f"robot0_joint{i}" for i in range(1, 8)),
        tuple(f"robot0_torq_j{i}" for i in range(1, 8)), ("gripper0_finger_joint1", "gripper0_finger_joint2"),
        ("gripper0_gripper_finger_joint1", "gripper0_gripper_finger_joint2"), (0.04, -0.04), (0.0, 0.0), None),
}


@dataclass
class Scene:
    model: object
    arm_joints: np.ndarray
    arm_qpos: np.ndarray
    arm_dofs: np.ndarray
    arm_actuators: np.ndarray
    arm_ctrl_lo: np.ndarray
    arm_ctrl_hi: np.ndarray
    gripper_qpos: np.ndarray
    gripper_actuators: np.ndarray
    gripper_open: np.ndarray  # actuator commands of the open and the closed gripper
    gripper_closed: np.ndarray
    tool_site: int
    world_to_base: np.ndarray
    home: np.ndarray
    object_bodies: dict[str, int] = field(default_factory=dict)
    free_objects: dict[str, int] = field(default_factory=dict)  # name -> qpos address of its free joint
    pan_radius: float = PAN_RADIUS
    gripper_geoms: frozenset[int] = frozenset()  # every geom of the gripper (contact checks)
    robot: str = "UR5e"

    def place_objects(self, model, data, rng: np.random.Generator, jitter: float) -> None:
        """Put every object at its nominal place +- jitter (the pan is fixed: moved in the model)."""
        for name, (x, y) in NOMINAL.items():
            xy = np.array([x, y]) + rng.uniform(-jitter, jitter, 2)
            body = self.object_bodies[name]
            if name in self.free_objects:
                adr = self.free_objects[name]
                z = data.qpos[adr + 2]
                data.qpos[adr:adr + 7] = [xy[0], xy[1], z, 1.0, 0.0, 0.0, 0.0]
            else:
                model.body_pos[body, :2] = xy


def _robosuite_models():
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        import robosuite  # noqa: F401
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    from robosuite.models.arenas import TableArena
    from robosuite.models.grippers import gripper_factory
    from robosuite.models.objects import BoxObject, CylinderObject
    from robosuite.models import robots
    from robosuite.models.tasks import ManipulationTask

    return TableArena, gripper_factory, BoxObject, CylinderObject, robots, ManipulationTask


def robot_spec(robot: str) -> RobotSpec:
    if robot not in ROBOTS:
        from atm_bench.errors import choice_error

        raise choice_error("simulated robot", robot, ROBOTS)
    return ROBOTS[robot]


def scene_xml(robot: str = "UR5e") -> str:
    """The MJCF of the scene with `robot` (a key of ROBOTS), objects at their nominal places."""
    spec = robot_spec(robot)
    TableArena, gripper_factory, BoxObject, CylinderObject, robots, ManipulationTask = _robosuite_models()
    robot = getattr(robots, spec.model)(idn=0)
    robot.add_gripper(gripper_factory(spec.gripper, idn=0))
    arena = TableArena(table_full_size=TABLE_SIZE, table_offset=(0, 0, TABLE_HEIGHT))
    robot.set_base_xpos((BASE_XY[0], BASE_XY[1], TABLE_HEIGHT))
    # The "tomato" is a short upright cylinder: a ball squirts out of the Robotiq's pinch and rolls off the pan.
    tomato = CylinderObject(name="tomato", size=[0.022, 0.022], rgba=[0.85, 0.12, 0.08, 1], density=1000,
                            friction=(1.5, 0.01, 0.001))
    cube = BoxObject(name="cube", size=[0.02, 0.02, 0.02], rgba=[0.1, 0.35, 0.85, 1], density=300)
    pan = CylinderObject(name="pan", size=[PAN_RADIUS, 0.008], rgba=[0.25, 0.25, 0.27, 1], joints=None)
    for obj, (x, y), z in ((tomato, NOMINAL["tomato"], 0.023), (cube, NOMINAL["cube"], 0.021), (pan, NOMINAL["pan"], 0.008)):
        obj.get_obj().set("pos", f"{x} {y} {TABLE_HEIGHT + z}")
    task = ManipulationTask(mujoco_arena=arena, mujoco_robots=[robot], mujoco_objects=[tomato, pan, cube])
    return task.get_xml()


def _ids(model, kind, names) -> np.ndarray:
    import mujoco

    ids = [mujoco.mj_name2id(model, kind, n) for n in names]
    if min(ids) < 0:
        raise RuntimeError(f"scene is missing one of {names}")
    return np.array(ids)


def _gripper_geoms(model) -> frozenset[int]:
    import mujoco

    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, int(b)) or "" for b in model.geom_bodyid]
    return frozenset(i for i, name in enumerate(names) if name.startswith("gripper0_"))


def build_scene(robot: str = "UR5e") -> Scene:
    import mujoco

    spec = robot_spec(robot)
    model = mujoco.MjModel.from_xml_string(scene_xml(robot))
    model.site_rgba[:, 3] = 0.0  # robosuite's visual aids (grip-site cylinder, etc.) stay out of the images
    obj = mujoco.mjtObj
    joints = _ids(model, obj.mjOBJ_JOINT, spec.joints)
    actuators = _ids(model, obj.mjOBJ_ACTUATOR, spec.actuators)
    gripper_joints = _ids(model, obj.mjOBJ_JOINT, spec.gripper_joints)
    gripper_act = _ids(model, obj.mjOBJ_ACTUATOR, spec.gripper_actuators)
    base = mujoco.MjData(model)
    mujoco.mj_kinematics(model, base)
    base_body = _ids(model, obj.mjOBJ_BODY, ["robot0_base"])[0]
    base_pose = np.eye(4)
    base_pose[:3, :3] = base.xmat[base_body].reshape(3, 3)
    base_pose[:3, 3] = base.xpos[base_body]
    bodies = {name: int(_ids(model, obj.mjOBJ_BODY, [f"{name}_main"])[0]) for name in NOMINAL}
    free = {name: int(model.jnt_qposadr[_ids(model, obj.mjOBJ_JOINT, [f"{name}_joint0"])[0]])
            for name in ("tomato", "cube")}
    scene = Scene(
        model=model, arm_joints=joints, arm_qpos=model.jnt_qposadr[joints], arm_dofs=model.jnt_dofadr[joints],
        arm_actuators=actuators, arm_ctrl_lo=model.actuator_ctrlrange[actuators, 0].copy(),
        arm_ctrl_hi=model.actuator_ctrlrange[actuators, 1].copy(), gripper_qpos=model.jnt_qposadr[gripper_joints],
        gripper_actuators=gripper_act, gripper_open=np.asarray(spec.gripper_open),
        gripper_closed=np.asarray(spec.gripper_closed),
        tool_site=int(_ids(model, obj.mjOBJ_SITE, ["gripper0_grip_site"])[0]),
        world_to_base=np.linalg.inv(base_pose),
        home=np.asarray(spec.home) if spec.home is not None else np.zeros(len(joints)),
        object_bodies=bodies, free_objects=free, gripper_geoms=_gripper_geoms(model), robot=robot)
    if spec.home is None:
        scene.home = _solve_home(scene, getattr(_robosuite_models()[4], spec.model)(idn=1).init_qpos)
    return scene


def _solve_home(scene: Scene, seed: np.ndarray) -> np.ndarray:
    """The joints that put the tool at HOME_TOOL_POSITION pointing down, by IK from `seed`."""
    import mujoco

    from atm_bench.envs.real.kinematics import solve_ik

    model, data = scene.model, mujoco.MjData(scene.model)

    def tool_pose(joints: np.ndarray) -> np.ndarray:
        data.qpos[scene.arm_qpos] = joints
        mujoco.mj_kinematics(model, data)
        pose = np.eye(4)
        pose[:3, :3] = data.site_xmat[scene.tool_site].reshape(3, 3)
        pose[:3, 3] = data.site_xpos[scene.tool_site]
        return scene.world_to_base @ pose

    target = np.eye(4)
    target[:3, :3] = np.diag([1.0, -1.0, -1.0])  # tool z down, x forward (as the scripted leader's poses)
    target[:3, 3] = HOME_TOOL_POSITION
    lower, upper = model.jnt_range[scene.arm_joints].T
    joints, err = solve_ik(tool_pose, target, np.asarray(seed, dtype=np.float64), lower, upper, iterations=500)
    if err > 1e-3:
        raise RuntimeError(f"{scene.robot}: no home pose reaches {HOME_TOOL_POSITION} (IK error {err:.4f})")
    return joints
