"""Rays from a camera into a MuJoCo scene, and which bodies are the robot: the geometry shared by
the exact simulator tracker (`atm_bench.tracking.sim`, over a demo's stored states) and the env
wrapper that says which image points show the robot at the live state (`envs.wrappers.GridOnRobot`),
so that training and evaluation answer "is this pixel on the robot?" with the same code.

Camera model (MuJoCo): the camera looks along its -z axis with y up; `cam_fovy` is the vertical
field of view; pixels are square, so the focal length in pixels is f = (H / 2) / tan(fovy / 2)
for both axes. Images are upright (row 0 at the top), so image v grows along camera -y.
A ray is cast against the geom groups the renderer draws (robosuite hides the collision meshes),
in the model the renderer draws (decimated meshes included), posed from the state.
"""

from __future__ import annotations

import re

import numpy as np

# robosuite names a robot's bodies by part and robot number: the arm `robot0_*`, its gripper
# `gripper0_*` and the pedestal it stands on `mount0_*` (a LIBERO scene has these three; the
# objects, fixtures and table have their own names).
ROBOT_BODY_NAME = re.compile(r"(robot|gripper|mount)\d+_")
# Rays that hit nothing (sky) get a point this far away, attached to the static world (body 0).
NO_HIT_DISTANCE = 20.0
# The geom groups a renderer without its own option draws: group 1 (visual), not 0 (collision).
DEFAULT_GEOMGROUP = (0, 1, 1, 0, 0, 0)


def is_robot_body(name: str) -> bool:
    """Whether a body of a robosuite scene is part of the robot (arm, gripper or mount)."""
    return ROBOT_BODY_NAME.match(name) is not None


def robot_bodies(model) -> np.ndarray:
    """(nbody,) bool: the model's bodies that are part of the robot, by `is_robot_body`."""
    return np.array([is_robot_body(model.body(b).name) for b in range(model.nbody)], dtype=bool)


def focal_length(fovy_deg: float, height: int) -> float:
    return 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)


def pixel_rays(xy: np.ndarray, cam_mat: np.ndarray, fovy: float, height: int, width: int) -> np.ndarray:
    """Unit world directions of the rays through normalised image points xy (N, 2)."""
    f = focal_length(fovy, height)
    u, v = xy[:, 0] * width, xy[:, 1] * height
    local = np.stack([(u - width / 2) / f, -(v - height / 2) / f, -np.ones_like(u)], axis=-1)
    world = local @ cam_mat.T
    return world / np.linalg.norm(world, axis=-1, keepdims=True)


def render_geomgroup(renderer) -> np.ndarray:
    """(6,) uint8: the geom groups `renderer` (a `SceneRenderer`) draws, the ones rays may hit."""
    option = getattr(renderer, "_option", None)
    return np.array(option.geomgroup if option is not None else DEFAULT_GEOMGROUP, dtype=np.uint8)


def pose_kinematics(model, data, qpos: np.ndarray, physics_model=None) -> None:
    """Put `data` of `model` at joint positions `qpos` (kinematics and cameras only, no physics).
    `physics_model`: where the fixtures are (LIBERO writes their poses into the physics model at
    reset, outside the state); a render-only copy of the scene follows it."""
    import mujoco

    if physics_model is not None and physics_model is not model:
        model.body_pos[:] = physics_model.body_pos
        model.body_quat[:] = physics_model.body_quat
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)


def cast_rays(model, data, cam: int, xy: np.ndarray, height: int, width: int,
              geomgroup: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rays from camera `cam` of the posed (`data`) scene through normalised image points xy (N, 2)
    -> (first body hit (N,) int (0: none), distance (N,) (NO_HIT_DISTANCE where none), ray origin
    (3,), unit directions (N, 3))."""
    import mujoco

    origin = data.cam_xpos[cam].copy()
    rays = pixel_rays(np.asarray(xy, dtype=np.float64), data.cam_xmat[cam].reshape(3, 3), float(model.cam_fovy[cam]),
                      height, width)
    bodies = np.zeros(len(rays), dtype=np.int64)
    dists = np.zeros(len(rays))
    geom = np.zeros(1, dtype=np.int32)
    for i, ray in enumerate(rays):
        dist = mujoco.mj_ray(model, data, origin, ray, geomgroup, 1, -1, geom)
        body = int(model.geom_bodyid[geom[0]]) if dist >= 0 and geom[0] >= 0 else 0
        bodies[i] = body
        dists[i] = NO_HIT_DISTANCE if body == 0 and dist < 0 else dist
    return bodies, dists, origin, rays
