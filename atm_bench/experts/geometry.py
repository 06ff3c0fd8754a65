"""Privileged geometry of LIBERO objects, read from the live MuJoCo model and data.

A scripted expert needs more than an object's body origin: where its top is, how wide it is,
where a bowl's rim lies. All of that is computed here from the object's collision geoms
(mesh vertices, or box corners for primitive shapes) posed in the current simulator state, so
the expert adapts to any init state without per-object tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import mujoco
import numpy as np


@dataclass(frozen=True)
class Extent:
    """An object's collision points in world coordinates and their axis-aligned bounds."""

    points: np.ndarray  # (N, 3)

    @property
    def lo(self) -> np.ndarray:
        return self.points.min(axis=0)

    @property
    def hi(self) -> np.ndarray:
        return self.points.max(axis=0)

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self.lo + self.hi)

    @property
    def size(self) -> np.ndarray:
        return self.hi - self.lo


def subtree_bodies(model: mujoco.MjModel, root: int) -> list[int]:
    """Body ids of `root` and all its descendants."""
    out = [root]
    for b in range(root + 1, model.nbody):
        parent = int(model.body_parentid[b])
        if parent in out:
            out.append(b)
    return out


@lru_cache(maxsize=None)
def _mesh_vertices(model_id: int, model: mujoco.MjModel, mesh: int) -> np.ndarray:
    adr, num = int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
    return np.array(model.mesh_vert[adr : adr + num], dtype=np.float64)


def _box_corners(half: np.ndarray) -> np.ndarray:
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return signs * half


def geom_local_points(model: mujoco.MjModel, geom: int) -> np.ndarray:
    """Points of one geom in its own frame: mesh vertices, else the corners of its local box."""
    if int(model.geom_type[geom]) == mujoco.mjtGeom.mjGEOM_MESH:
        return _mesh_vertices(id(model), model, int(model.geom_dataid[geom]))
    aabb = np.asarray(model.geom_aabb[geom], dtype=np.float64)
    return aabb[:3] + _box_corners(aabb[3:])


def collision_geoms(model: mujoco.MjModel, bodies: list[int]) -> list[int]:
    """Geoms of `bodies` that take part in contacts (LIBERO objects also carry visual-only meshes)."""
    body_set = set(bodies)
    return [
        g
        for g in range(model.ngeom)
        if int(model.geom_bodyid[g]) in body_set and (model.geom_contype[g] or model.geom_conaffinity[g])
    ]


def geoms_extent(model: mujoco.MjModel, data: mujoco.MjData, geoms: list[int]) -> Extent:
    """World-frame points of the given geoms in the current state."""
    chunks = []
    for g in geoms:
        local = geom_local_points(model, g)
        rot = np.asarray(data.geom_xmat[g], dtype=np.float64).reshape(3, 3)
        chunks.append(local @ rot.T + np.asarray(data.geom_xpos[g]))
    if not chunks:
        raise ValueError("no collision geoms")
    return Extent(np.concatenate(chunks, axis=0))


def body_extent(model: mujoco.MjModel, data: mujoco.MjData, root_body: str) -> Extent:
    """World-frame collision points of a body and its subtree (an object, a drawer, a knob)."""
    root = model.body(root_body).id
    return geoms_extent(model, data, collision_geoms(model, subtree_bodies(model, root)))
