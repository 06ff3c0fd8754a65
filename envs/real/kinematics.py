"""Forward kinematics of Universal Robots arms (standard DH, the published parameters) and a
small damped-least-squares IK that works with any forward-kinematics function.

The safety layer needs the tool position of a *target* before it is sent (workspace limits), on
the real arm without asking the controller, so FK is computed here. Frames: the robot's base
frame as UR defines it; the tool point is the flange plus `tool_offset` along the flange z axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# (d, a, alpha) per joint, metres / radians, from Universal Robots' published DH tables.
UR_DH = {
    "ur5": ((0.089159, 0.0, np.pi / 2), (0.0, -0.425, 0.0), (0.0, -0.39225, 0.0),
            (0.10915, 0.0, np.pi / 2), (0.09465, 0.0, -np.pi / 2), (0.0823, 0.0, 0.0)),
    "ur5e": ((0.1625, 0.0, np.pi / 2), (0.0, -0.425, 0.0), (0.0, -0.3922, 0.0),
             (0.1333, 0.0, np.pi / 2), (0.0997, 0.0, -np.pi / 2), (0.0996, 0.0, 0.0)),
}


def _dh(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    return np.array([[ct, -st * ca, st * sa, a * ct],
                     [st, ct * ca, -ct * sa, a * st],
                     [0.0, sa, ca, d],
                     [0.0, 0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class URKinematics:
    """FK of a UR arm: `pose(q)` is the 4x4 tool pose in the base frame."""

    model: str = "ur5"
    tool_offset: float = 0.0  # metres along the flange z axis (e.g. a gripper's TCP)

    def __post_init__(self) -> None:
        if self.model not in UR_DH:
            from atm_bench.errors import choice_error

            raise choice_error("UR model", self.model, sorted(UR_DH))

    def pose(self, joints: np.ndarray) -> np.ndarray:
        q = np.asarray(joints, dtype=np.float64)
        out = np.eye(4)
        for theta, (d, a, alpha) in zip(q, UR_DH[self.model]):
            out = out @ _dh(theta, d, a, alpha)
        tool = np.eye(4)
        tool[2, 3] = self.tool_offset
        return out @ tool


def rotation_error(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) rotating `current` onto `target` (both 3x3), in the base frame."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(target @ current.T).as_rotvec()


def solve_ik(fk: Callable[[np.ndarray], np.ndarray], target: np.ndarray, seed: np.ndarray,
             lower: np.ndarray, upper: np.ndarray, orientation_weight: float = 0.3, iterations: int = 200,
             damping: float = 1e-2, tolerance: float = 1e-4) -> tuple[np.ndarray, float]:
    """Joints whose FK pose approaches `target` (4x4), by damped least squares on a numerical
    Jacobian, starting from `seed` and staying inside [lower, upper]. Returns (joints, error)."""
    q = np.clip(np.asarray(seed, dtype=np.float64).copy(), lower, upper)

    def residual(joints: np.ndarray) -> np.ndarray:
        pose = fk(joints)
        return np.concatenate([target[:3, 3] - pose[:3, 3],
                               orientation_weight * rotation_error(pose[:3, :3], target[:3, :3])])

    err = residual(q)
    eps = 1e-6
    for _ in range(iterations):
        if np.linalg.norm(err) < tolerance:
            break
        jac = np.empty((6, len(q)))
        for j in range(len(q)):
            dq = np.zeros_like(q)
            dq[j] = eps
            jac[:, j] = -(residual(q + dq) - err) / eps
        step = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
        q = np.clip(q + np.clip(step, -0.2, 0.2), lower, upper)
        err = residual(q)
    return q, float(np.linalg.norm(err))
