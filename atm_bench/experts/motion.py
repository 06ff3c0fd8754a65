"""Closed-loop end-effector servoing under LIBERO's OSC_POSE delta controller.

An action is a *delta* pose command (scaled by the controller's output_max, 5 cm and 0.5 rad)
that the controller chases for one 20 Hz step; a proportional law on the pose error, clipped
to a per-episode speed, moves the hand smoothly and stops where asked. Skills are written as
generators that `yield` one 7-d action per step and read the live simulator in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator

import numpy as np
from scipy.spatial.transform import Rotation

from atm_bench.experts.scene import DOWN, Scene, rot_z

Actions = Generator[np.ndarray, None, bool]

# The servo runs at full speed while the hand is APPROACH metres or more from its target and
# slows in proportion below that. 2 cm: sharp stops, so demos' labels jump from full speed to ~0
# near a grasp; a longer approach makes them a smooth function of the remaining distance.
APPROACH = 0.02
ROT_GAIN = 2.5
OPEN, CLOSE = -1.0, 1.0


@dataclass
class Style:
    """Per-episode variation, drawn from the expert's seed, so demos are not all identical."""

    speed: float = 1.0  # cap on the translational action magnitude
    noise: float = 0.0  # std of Gaussian noise added to the translational action
    hover: float = 0.10  # height above a grasp/placement point before descending
    close_steps: int = 12
    jitter: float = 0.0  # std (m) of offsets added to approach points
    approach: float = APPROACH  # distance (m) from a target below which the servo slows down

    @classmethod
    def sample(cls, rng: np.random.Generator, approach: float = APPROACH) -> "Style":
        """A random style; `approach` is a data option (one value for a whole dataset), not drawn."""
        return cls(
            speed=float(rng.uniform(0.7, 1.0)),
            noise=float(rng.uniform(0.0, 0.06)),
            hover=float(rng.uniform(0.07, 0.12)),
            close_steps=int(rng.integers(9, 14)),
            jitter=float(rng.uniform(0.0, 0.004)),
            approach=check_approach(approach),
        )


def check_approach(approach: float) -> float:
    """The servo's approach distance, validated (it divides the pose error)."""
    if not 0.0 < approach <= 0.5:
        raise ValueError(f"servo approach distance must be in (0, 0.5] m, got {approach}; "
                         f"the expert's default is {APPROACH}")
    return float(approach)


@dataclass
class Ctx:
    """What every skill needs: the scene, the episode's randomness and style, the held object."""

    scene: Scene
    rng: np.random.Generator
    style: Style
    grip: float = OPEN
    held: str | None = None
    log: list[str] = field(default_factory=list)

    def jitter(self, n: int = 3) -> np.ndarray:
        return self.rng.normal(0.0, self.style.jitter, n)


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame axis-angle that rotates `current` onto `target`."""
    return Rotation.from_matrix(target @ current.T).as_rotvec()


def servo(ctx: Ctx, pos: np.ndarray, rot: np.ndarray, grip: float, speed: float = 1.0,
          approach: float | None = None) -> np.ndarray:
    """One action moving the hand toward (pos, rot) with the gripper commanded to `grip`.

    `approach` overrides the style's slow-down distance: contact skills (pushing, pulling, turning)
    drive toward a target a fixed lead ahead of the hand, a speed command, so they keep APPROACH.
    """
    sc = ctx.scene
    gain = 1.0 / (ctx.style.approach if approach is None else approach)  # (as a product: bit-identical demos)
    dpos = (np.asarray(pos) - sc.eef_pos) * gain
    cap = ctx.style.speed * speed
    norm = np.linalg.norm(dpos)
    if norm > cap:
        dpos *= cap / norm
    dpos = dpos + ctx.rng.normal(0.0, ctx.style.noise, 3) * min(1.0, norm)
    drot = np.clip(rotation_error(rot, sc.eef_rot) * ROT_GAIN, -1.0, 1.0)
    ctx.grip = grip
    return np.clip(np.concatenate([dpos, drot, [grip]]), -1.0, 1.0)


def down_rot(yaw: float) -> np.ndarray:
    """Top-down hand orientation rotated by `yaw` about world z."""
    return rot_z(yaw) @ DOWN


def move_to(
    ctx: Ctx,
    pos: np.ndarray,
    rot: np.ndarray,
    grip: float | None = None,
    tol: float = 0.008,
    rot_tol: float = 0.08,
    max_steps: int = 80,
    speed: float = 1.0,
    stall_steps: int = 0,
    approach: float | None = None,
) -> Actions:
    """Servo until within `tol` (m) and `rot_tol` (rad), or `max_steps`; returns whether reached.

    stall_steps > 0 stops early once the hand has not moved for that many steps (it is pushing
    against something, e.g. a held object resting on its support). `approach`: see `servo`.
    """
    grip = ctx.grip if grip is None else grip
    sc = ctx.scene
    last, still = sc.eef_pos, 0
    for _ in range(max_steps):
        err = np.linalg.norm(np.asarray(pos) - sc.eef_pos)
        if err < tol and np.linalg.norm(rotation_error(rot, sc.eef_rot)) < rot_tol:
            return True
        yield servo(ctx, pos, rot, grip, speed, approach)
        now = sc.eef_pos
        still = still + 1 if np.linalg.norm(now - last) < 5e-4 else 0
        last = now
        if stall_steps and still >= stall_steps:
            return False
    return False


def hold(ctx: Ctx, steps: int, grip: float, rot: np.ndarray | None = None) -> Actions:
    """Stay in place for `steps` while the gripper opens or closes."""
    sc = ctx.scene
    pos = sc.eef_pos
    rot = sc.eef_rot if rot is None else rot
    for _ in range(steps):
        yield servo(ctx, pos, rot, grip, speed=0.5)
    return True
