"""Read-only privileged view of a running LIBERO task for the scripted expert.

Everything the expert knows comes from here: the end-effector pose, the gripper opening, object
poses and collision extents, region sites, articulated joints. It reads the live simulator, so
a plan adapts after every step (an object that slipped is re-targeted where it lies).
"""

from __future__ import annotations

import mujoco
import numpy as np

from atm_bench.experts.geometry import Extent, body_extent, collision_geoms, geoms_extent, subtree_bodies

EEF_SITE = "gripper0_grip_site"
FINGER_JOINTS = ("gripper0_finger_joint1", "gripper0_finger_joint2")
# Gripper orientation with the fingers pointing straight down and opening along world y
# (the Panda's home orientation in LIBERO): columns are the gripper's axes in world coordinates.
DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def finger_axis(yaw: float) -> np.ndarray:
    """World xy direction along which the fingers open for a top-down grasp at `yaw`."""
    return np.array([-np.sin(yaw), np.cos(yaw)])


def yaw_for_axis(axis_xy: np.ndarray) -> float:
    """The top-down yaw in [-pi/2, pi/2] whose finger axis is parallel to `axis_xy`."""
    yaw = float(np.arctan2(-axis_xy[0], axis_xy[1]))
    while yaw > np.pi / 2:
        yaw -= np.pi
    while yaw < -np.pi / 2:
        yaw += np.pi
    return yaw


class Scene:
    """Privileged accessors over `env.task_env` and the raw MuJoCo model/data."""

    def __init__(self, env) -> None:
        self.env = env
        self.task = env.task_env
        self.model: mujoco.MjModel = env.sim.model._model
        self.data: mujoco.MjData = env.sim.data._data
        self._eef = self.model.site(EEF_SITE).id
        self._fingers = [self.model.jnt_qposadr[self.model.joint(j).id] for j in FINGER_JOINTS]
        gripper_root = self.model.body("gripper0_right_gripper").id if self._has_body("gripper0_right_gripper") else None
        self._gripper_geoms: set[int] = set()
        if gripper_root is not None:
            bodies = subtree_bodies(self.model, gripper_root)
            self._gripper_geoms = {g for g in range(self.model.ngeom) if int(self.model.geom_bodyid[g]) in bodies}
        self._geom_cache: dict[str, list[int]] = {}
        self.table_z = self._table_height()
        self.home = self.eef_pos  # the hand where the episode starts (the arm's rest posture)

    def _has_body(self, name: str) -> bool:
        return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name) >= 0

    def _table_height(self) -> float:
        """Height of the work surface: the top of the arena's table body, else the floor (z=0)."""
        m = self.model
        geoms = [
            g
            for g in range(m.ngeom)
            if (m.geom_contype[g] or m.geom_conaffinity[g]) and "table" in m.body(int(m.geom_bodyid[g])).name
        ]
        return float(geoms_extent(m, self.data, geoms).hi[2]) if geoms else 0.0

    # -- robot -----------------------------------------------------------------------

    @property
    def eef_pos(self) -> np.ndarray:
        return np.array(self.data.site_xpos[self._eef])

    @property
    def eef_rot(self) -> np.ndarray:
        return np.array(self.data.site_xmat[self._eef]).reshape(3, 3)

    @property
    def gripper_width(self) -> float:
        """Distance between the fingers (about 0.08 open, 0 closed on nothing)."""
        a, b = (float(self.data.qpos[i]) for i in self._fingers)
        return a - b

    def gripper_touches(self, root_body: str) -> bool:
        """Whether any gripper geom is in contact with the object under `root_body`."""
        geoms = set(self.object_geoms(root_body))
        for c in self.data.contact[: self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            if (g1 in self._gripper_geoms and g2 in geoms) or (g2 in self._gripper_geoms and g1 in geoms):
                return True
        return False

    # -- objects, fixtures, regions --------------------------------------------------

    def object(self, name: str):
        return self.task.get_object(name)

    def is_site(self, name: str) -> bool:
        return name in self.task.object_sites_dict

    def root_body(self, name: str) -> str:
        return self.object(name).root_body

    def body_pos(self, name: str) -> np.ndarray:
        """Position LIBERO's predicates use for an object: its root body origin."""
        return np.array(self.data.xpos[self.model.body(self.root_body(name)).id])

    def object_geoms(self, root_body: str) -> list[int]:
        if root_body not in self._geom_cache:
            root = self.model.body(root_body).id
            self._geom_cache[root_body] = collision_geoms(self.model, subtree_bodies(self.model, root))
        return self._geom_cache[root_body]

    def extent(self, name: str) -> Extent:
        """Collision extent of an object or fixture (by its BDDL name) or of a body name."""
        root = self.root_body(name) if self.object(name) is not None else name
        return geoms_extent(self.model, self.data, self.object_geoms(root))

    def body_extent(self, body: str) -> Extent:
        return body_extent(self.model, self.data, body)

    def site_pos(self, name: str) -> np.ndarray:
        return np.array(self.data.site_xpos[self.model.site(name).id])

    def site_mat(self, name: str) -> np.ndarray:
        return np.array(self.data.site_xmat[self.model.site(name).id]).reshape(3, 3)

    def site_half_size(self, name: str) -> np.ndarray:
        """World-axis half sizes of a region, as LIBERO's `in_box` computes them."""
        return np.abs(self.site_mat(name) @ np.asarray(self.task.object_sites_dict[name].size, dtype=np.float64))

    def site_parent(self, name: str) -> str | None:
        return self.task.object_sites_dict[name].parent_name

    def joint_qpos(self, joint: str) -> float:
        return float(self.data.qpos[self.model.jnt_qposadr[self.model.joint(joint).id]])

    def joint_anchor(self, joint: str) -> np.ndarray:
        return np.array(self.data.xanchor[self.model.joint(joint).id])

    def joint_axis(self, joint: str) -> np.ndarray:
        return np.array(self.data.xaxis[self.model.joint(joint).id])

    def joint_body(self, joint: str) -> str:
        return self.model.body(int(self.model.jnt_bodyid[self.model.joint(joint).id])).name

    def object_names(self) -> list[str]:
        return list(self.task.objects_dict)

    def fixture_names(self) -> list[str]:
        return list(self.task.fixtures_dict)
