"""Safety of the real arm: every target passes `SafetyFilter` before it reaches the arm, the
loop runs at a fixed rate (`RateKeeper`, which counts missed deadlines), and `StopOnExit`
leaves the arm stopped however the block ends (exception, Ctrl-C, SIGTERM, or normally).

What the filter does, in order, for each control tick:
1. NaN / inf anywhere in the action: always refused (`SafetyViolation`, arm stopped).
2. Joint limits: targets clipped into [joint_lower, joint_upper].
3. Max joint step: each joint moves at most `max_joint_step` rad from the previous target.
4. Workspace: the tool point of the (clipped) target must lie in the box
   [workspace_lower, workspace_upper] (metres, robot base frame); if not, the previous target
   is held.
With `strict=True` steps 2-4 stop the arm instead of correcting. Every intervention is counted
in `SafetyReport`, which the env puts in `info` and the recorder stores with each demo.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from atm_bench.errors import UserError


class SafetyViolation(RuntimeError):
    """A command the safety layer refused; the arm has been stopped."""


@dataclass(frozen=True)
class SafetyConfig:
    """Limits, in the robot's base frame. `None` joint limits mean the arm's own."""

    control_hz: float = 10.0
    max_joint_step: float = 0.05  # rad per tick (0.5 rad/s at 10 Hz)
    joint_lower: tuple[float, ...] | None = None
    joint_upper: tuple[float, ...] | None = None
    workspace_lower: tuple[float, float, float] = (-0.85, -0.85, 0.0)
    workspace_upper: tuple[float, float, float] = (0.85, 0.85, 0.9)
    strict: bool = False
    deadline_slack: float = 0.2  # a tick later than this fraction of the period counts as missed

    def __post_init__(self) -> None:
        if self.control_hz <= 0 or self.max_joint_step <= 0:
            raise UserError("safety: control_hz and max_joint_step must be > 0")
        if any(lo >= hi for lo, hi in zip(self.workspace_lower, self.workspace_upper)):
            raise UserError("safety: every workspace_lower must be below workspace_upper")

    @classmethod
    def from_json(cls, path: str | Path, **overrides) -> "SafetyConfig":
        """Read a JSON object with any of the fields (unknown keys are an error)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: cannot read the safety config ({exc})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"{path}: unknown safety keys {unknown}; valid: {sorted(known)}")
        raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        raw.update(overrides)
        return cls(**raw)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SafetyReport:
    ticks: int = 0
    nonfinite: int = 0
    joint_clipped: int = 0
    step_clipped: int = 0
    workspace_held: int = 0
    missed_deadlines: int = 0
    max_late_ms: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def joint_limits(config: SafetyConfig, arm) -> tuple[np.ndarray, np.ndarray]:
    """The tighter of the configured and the arm's own limits."""
    lower = arm.joint_lower if config.joint_lower is None else np.maximum(arm.joint_lower, config.joint_lower)
    upper = arm.joint_upper if config.joint_upper is None else np.minimum(arm.joint_upper, config.joint_upper)
    if len(lower) != arm.dof or len(upper) != arm.dof or np.any(lower >= upper):
        raise UserError(f"safety: joint limits must be {arm.dof} values each with lower < upper")
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)


class SafetyFilter:
    """Turns a requested (joints, gripper) into one that is safe to send, or refuses it."""

    def __init__(self, config: SafetyConfig, arm) -> None:
        self.config = config
        self.arm = arm
        self.lower, self.upper = joint_limits(config, arm)
        self.ws_lower = np.asarray(config.workspace_lower, dtype=np.float64)
        self.ws_upper = np.asarray(config.workspace_upper, dtype=np.float64)
        self.report = SafetyReport()
        self.previous: np.ndarray | None = None

    def reset(self, joints: np.ndarray) -> None:
        """Start from the measured joints (after the arm was reset)."""
        self.previous = np.asarray(joints, dtype=np.float64).copy()

    def in_workspace(self, joints: np.ndarray) -> bool:
        p = self.arm.tool_pose(joints)[:3, 3]
        return bool(np.all(p >= self.ws_lower) and np.all(p <= self.ws_upper))

    def _violation(self, message: str) -> SafetyViolation:
        self.arm.stop()
        return SafetyViolation(f"{message}; the arm is stopped")

    def __call__(self, joints: np.ndarray, gripper: float) -> tuple[np.ndarray, float]:
        joints = np.asarray(joints, dtype=np.float64)
        if self.previous is None:
            self.reset(self.arm.read_joints())
        if joints.shape != (self.arm.dof,):
            raise self._violation(f"expected {self.arm.dof} joint targets, got shape {joints.shape}")
        if not (np.all(np.isfinite(joints)) and np.isfinite(gripper)):
            self.report.nonfinite += 1
            raise self._violation("non-finite (NaN/inf) action")
        strict = self.config.strict
        safe = np.clip(joints, self.lower, self.upper)
        if np.any(safe != joints):
            self.report.joint_clipped += 1
            if strict:
                raise self._violation(f"joint target outside the limits: {np.round(joints, 3).tolist()}")
        step = safe - self.previous
        limit = self.config.max_joint_step
        if np.max(np.abs(step)) > limit:
            self.report.step_clipped += 1
            if strict:
                raise self._violation(f"joint step {np.max(np.abs(step)):.3f} rad exceeds {limit} rad per tick")
            safe = self.previous + np.clip(step, -limit, limit)
        if not self.in_workspace(safe):
            self.report.workspace_held += 1
            if strict:
                p = self.arm.tool_pose(safe)[:3, 3]
                raise self._violation(f"tool point {np.round(p, 3).tolist()} leaves the workspace")
            safe = self.previous.copy()
        self.previous = safe
        self.report.ticks += 1
        return safe, float(np.clip(gripper, 0.0, 1.0))


class RateKeeper:
    """A fixed-rate loop: `wait()` at the end of each tick sleeps until the next tick starts.
    A tick that ends more than `slack` x period after its deadline is a missed deadline: it is
    counted, and the schedule restarts from now (no burst of catch-up ticks). `sleep=False` only
    measures (simulation faster or slower than real time)."""

    def __init__(self, hz: float, slack: float = 0.2, sleep: bool = True,
                 clock: Callable[[], float] = time.perf_counter, sleeper: Callable[[float], None] = time.sleep,
                 report: SafetyReport | None = None) -> None:
        self.period = 1.0 / hz
        self.slack = slack
        self.sleep = sleep
        self.clock, self.sleeper = clock, sleeper
        self.report = report if report is not None else SafetyReport()
        self._deadline: float | None = None

    def start(self) -> None:
        self._deadline = self.clock() + self.period

    def wait(self) -> float:
        """End a tick; returns how late it was (s, <= 0 when on time)."""
        if self._deadline is None:
            self.start()
        now = self.clock()
        late = now - self._deadline
        if late > self.slack * self.period:
            self.report.missed_deadlines += 1
            self.report.max_late_ms = max(self.report.max_late_ms, late * 1e3)
            self._deadline = now + self.period
            return late
        if self.sleep and late < 0:
            self.sleeper(-late)
        self._deadline += self.period
        return late


class StopOnExit:
    """`with StopOnExit(arm):` the arm is stopped when the block ends, whatever ends it.
    SIGTERM inside the block (main thread only) is turned into SystemExit so it stops it too."""

    def __init__(self, arm) -> None:
        self.arm = arm
        self._previous_handler = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGTERM, _raise_exit)
        return self.arm

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if not self.arm.stopped:
                self.arm.stop()
        finally:
            if self._previous_handler is not None:
                signal.signal(signal.SIGTERM, self._previous_handler)
        return False


def _raise_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


__all__ = ["SafetyConfig", "SafetyFilter", "SafetyReport", "SafetyViolation", "RateKeeper", "StopOnExit",
           "joint_limits"]
