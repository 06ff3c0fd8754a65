"""The simulated UR5e scene: robosuite 1.4's UR5e + Robotiq 85 models on robosuite's table
arena, a tomato (a short red cylinder), a pan (flat cylinder) and a cube, compiled with MuJoCo directly (no
robosuite environment or controller: the arm is driven like the real one, by joint targets).
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
CAMERAS = {"agentview": "agentview", "eye_in_hand": "robot0_eye_in_hand"}


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
    gripper_ctrl_hi: np.ndarray
    tool_site: int
    world_to_base: np.ndarray
    home: np.ndarray
    object_bodies: dict[str, int] = field(default_factory=dict)
    free_objects: dict[str, int] = field(default_factory=dict)  # name -> qpos address of its free joint
    pan_radius: float = PAN_RADIUS

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
    from robosuite.models.robots import UR5e
    from robosuite.models.tasks import ManipulationTask

    return TableArena, gripper_factory, BoxObject, CylinderObject, UR5e, ManipulationTask


def scene_xml() -> str:
    """The MJCF of the scene, objects at their nominal places."""
    TableArena, gripper_factory, BoxObject, CylinderObject, UR5e, ManipulationTask = _robosuite_models()
    robot = UR5e(idn=0)
    robot.add_gripper(gripper_factory("Robotiq85Gripper", idn=0))
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


def build_scene() -> Scene:
    import mujoco

    model = mujoco.MjModel.from_xml_string(scene_xml())
    model.site_rgba[:, 3] = 0.0  # robosuite's visual aids (grip-site cylinder, etc.) stay out of the images
    obj = mujoco.mjtObj
    arm_names = [f"robot0_{j}" for j in ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
                                          "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")]
    joints = _ids(model, obj.mjOBJ_JOINT, arm_names)
    actuators = _ids(model, obj.mjOBJ_ACTUATOR, [f"robot0_torq_j{i}" for i in range(1, 7)])
    gripper_joints = _ids(model, obj.mjOBJ_JOINT, ["gripper0_finger_joint", "gripper0_right_outer_knuckle_joint"])
    gripper_act = _ids(model, obj.mjOBJ_ACTUATOR, ["gripper0_finger_1", "gripper0_finger_2"])
    base = mujoco.MjData(model)
    mujoco.mj_kinematics(model, base)
    base_body = _ids(model, obj.mjOBJ_BODY, ["robot0_base"])[0]
    base_pose = np.eye(4)
    base_pose[:3, :3] = base.xmat[base_body].reshape(3, 3)
    base_pose[:3, 3] = base.xpos[base_body]
    bodies = {name: int(_ids(model, obj.mjOBJ_BODY, [f"{name}_main"])[0]) for name in NOMINAL}
    free = {name: int(model.jnt_qposadr[_ids(model, obj.mjOBJ_JOINT, [f"{name}_joint0"])[0]])
            for name in ("tomato", "cube")}
    return Scene(
        model=model, arm_joints=joints, arm_qpos=model.jnt_qposadr[joints], arm_dofs=model.jnt_dofadr[joints],
        arm_actuators=actuators, arm_ctrl_lo=model.actuator_ctrlrange[actuators, 0].copy(),
        arm_ctrl_hi=model.actuator_ctrlrange[actuators, 1].copy(), gripper_qpos=model.jnt_qposadr[gripper_joints],
        gripper_actuators=gripper_act, gripper_ctrl_hi=model.actuator_ctrlrange[gripper_act, 1].copy(),
        tool_site=int(_ids(model, obj.mjOBJ_SITE, ["gripper0_grip_site"])[0]),
        world_to_base=np.linalg.inv(base_pose),
        home=HOME,
        object_bodies=bodies, free_objects=free)
