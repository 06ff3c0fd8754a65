"""Leaders that produce joint-position targets for the follower arm, one per control tick:

- `GelloLeader`: a GELLO-style kinematic replica of the arm built from Dynamixel servos
  (dynamixel-sdk), read at every tick; joint = sign x (raw - offset), calibrated once
  (`calibrate_offsets`) with the leader held in a known pose. Its last servo is the gripper
  trigger, mapped from [gripper_open, gripper_closed] raw radians to [0, 1].
- `KeyboardLeader`: jogs one joint at a time from the terminal (no extra hardware).
- `ScriptedLeader`: plays joint waypoints (tests, simulation, repeatable real motions);
  `pick_place_script` makes the waypoints of a pick-and-place in the simulated scene by IK.

Keys (all interactive leaders, read without Enter from the terminal): Enter ends the episode
and keeps it, `x` ends it and discards it; the keyboard leader adds the jog keys below.
"""

from __future__ import annotations

import json
import math
import os
import select
import sys
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from atm_bench.errors import UserError


@dataclass
class LeaderCommand:
    """One tick's target: joints (dof,), gripper 0 open .. 1 closed; `done` ends the episode,
    `discard` too and drops it."""

    joints: np.ndarray
    gripper: float
    done: bool = False
    discard: bool = False


class Leader(ABC):
    name: str = "leader"
    interactive: bool = True

    def start(self, arm) -> None:
        """Called once per episode, with the follower at home."""

    @abstractmethod
    def read(self) -> LeaderCommand:
        ...

    def close(self) -> None:
        ...


# -- terminal keys -----------------------------------------------------------------------------------


class TerminalKeys:
    """Non-blocking single-key reads from a terminal (cbreak mode while open). Without a TTY
    (CI, pipes) it yields nothing."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdin
        self._saved = None
        if self.stream.isatty():
            import termios
            import tty

            self._saved = termios.tcgetattr(self.stream)
            tty.setcbreak(self.stream.fileno())

    def __call__(self) -> list[str]:
        if self._saved is None:
            return []
        keys = []
        while select.select([self.stream], [], [], 0)[0]:
            ch = os.read(self.stream.fileno(), 1).decode(errors="ignore")
            if not ch:
                break
            keys.append(ch)
        return keys

    def close(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream, termios.TCSADRAIN, self._saved)
            self._saved = None


KeySource = Callable[[], Iterable[str]]


def _episode_keys(keys: Iterable[str]) -> tuple[bool, bool]:
    done = discard = False
    for key in keys:
        if key in ("\n", "\r"):
            done = True
        elif key.lower() == "x":
            done = discard = True
    return done, discard


# -- keyboard ----------------------------------------------------------------------------------------

# joint i: (increase, decrease)
JOG_KEYS = (("q", "a"), ("w", "s"), ("e", "d"), ("r", "f"), ("t", "g"), ("y", "h"))


class KeyboardLeader(Leader):
    """Jog joints from the keyboard: q/a, w/s, e/d, r/f, t/g, y/h move joints 1-6 up/down by
    `step` rad per key press; space toggles the gripper; Enter ends, x discards."""

    name = "keyboard"

    def __init__(self, keys: KeySource | None = None, step: float = 0.03) -> None:
        self.keys = keys or TerminalKeys()
        self.step = step
        self.target: np.ndarray | None = None
        self.gripper = 0.0

    def start(self, arm) -> None:
        self.target = arm.read_joints().copy()
        self.gripper = 0.0

    def apply(self, key: str) -> None:
        for joint, (up, down) in enumerate(JOG_KEYS):
            if key == up:
                self.target[joint] += self.step
            elif key == down:
                self.target[joint] -= self.step
        if key == " ":
            self.gripper = 1.0 - self.gripper

    def read(self) -> LeaderCommand:
        if self.target is None:
            raise RuntimeError("start() the leader before reading it")
        keys = list(self.keys())
        for key in keys:
            self.apply(key)
        done, discard = _episode_keys(keys)
        return LeaderCommand(self.target.copy(), self.gripper, done, discard)

    def close(self) -> None:
        if isinstance(self.keys, TerminalKeys):
            self.keys.close()


# -- GELLO -------------------------------------------------------------------------------------------

ADDR_TORQUE_ENABLE = 64
ADDR_PRESENT_POSITION = 132
TICKS_PER_TURN = 4096


@dataclass(frozen=True)
class GelloConfig:
    """A GELLO leader: Dynamixel ids of the 6 joints (+ the gripper trigger), signs and offsets
    (rad) mapping raw servo angles to the follower's joints, and the trigger's raw range."""

    port: str = "/dev/ttyUSB0"
    baudrate: int = 57600
    joint_ids: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    gripper_id: int | None = 7
    signs: tuple[int, ...] = (1, 1, -1, 1, 1, 1)
    offsets: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    gripper_open: float = 0.0  # raw rad of the trigger released
    gripper_closed: float = 0.8  # raw rad of the trigger squeezed

    def __post_init__(self) -> None:
        n = len(self.joint_ids)
        if len(self.signs) != n or len(self.offsets) != n or any(s not in (1, -1) for s in self.signs):
            raise UserError(f"GELLO config: {n} joint ids need {n} signs (+1/-1) and {n} offsets")
        if self.gripper_open == self.gripper_closed:
            raise UserError("GELLO config: gripper_open and gripper_closed must differ")

    @classmethod
    def from_json(cls, path: str | Path) -> "GelloConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: cannot read the GELLO config ({exc}); make one with "
                            "`atm-bench real calibrate-gello`") from None
        known = {f.name for f in fields(cls)}
        if set(raw) - known:
            raise UserError(f"{path}: unknown GELLO keys {sorted(set(raw) - known)}; valid: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    def joints(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(self.signs) * (np.asarray(raw) - np.asarray(self.offsets))

    def gripper(self, raw: float) -> float:
        return float(np.clip((raw - self.gripper_open) / (self.gripper_closed - self.gripper_open), 0.0, 1.0))


def calibrate_offsets(raw: Sequence[float], known: Sequence[float], signs: Sequence[int],
                      snap: float | None = math.pi / 2) -> tuple[float, ...]:
    """Offsets that map the leader's raw angles `raw`, held in the follower's pose `known`, onto
    `known`: sign x (raw - offset) = known. GELLO's servo horns are mounted at multiples of
    pi / 2, so offsets are snapped to the nearest multiple (`snap=None` keeps them exact)."""
    raw, known, signs = np.asarray(raw, float), np.asarray(known, float), np.asarray(signs, float)
    offsets = raw - signs * known
    if snap:
        offsets = np.round(offsets / snap) * snap
    return tuple(float(o) for o in offsets)


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


class DynamixelBus:
    """Reads present positions (rad) of a set of Dynamixel X-series servos in one sync read,
    torque off (the leader is moved by hand)."""

    def __init__(self, port: str, baudrate: int, ids: Sequence[int]) -> None:
        from atm_bench.envs.real._optional import require

        dxl = require("dynamixel_sdk", "dynamixel-sdk", "the GELLO leader arm")
        self._dxl = dxl
        self.ids = list(ids)
        self._port = dxl.PortHandler(port)
        self._packet = dxl.PacketHandler(2.0)
        if not self._port.openPort():
            raise UserError(f"cannot open {port}; is the U2D2 plugged in, and are you in the dialout group?")
        if not self._port.setBaudRate(baudrate):
            raise UserError(f"cannot set baud rate {baudrate} on {port}")
        for i in self.ids:
            self._packet.write1ByteTxRx(self._port, i, ADDR_TORQUE_ENABLE, 0)
        self._reader = dxl.GroupSyncRead(self._port, self._packet, ADDR_PRESENT_POSITION, 4)
        for i in self.ids:
            if not self._reader.addParam(i):
                raise UserError(f"Dynamixel id {i}: cannot add to the sync read")

    def read(self) -> np.ndarray:
        result = self._reader.txRxPacket()
        if result != self._dxl.COMM_SUCCESS:
            raise RuntimeError(f"Dynamixel sync read failed: {self._packet.getTxRxResult(result)}")
        ticks = [_signed32(self._reader.getData(i, ADDR_PRESENT_POSITION, 4)) for i in self.ids]
        return np.asarray(ticks, dtype=np.float64) * (2 * math.pi / TICKS_PER_TURN)

    def close(self) -> None:
        self._port.closePort()


class GelloLeader(Leader):
    """A GELLO leader arm. `bus` may be given (tests); otherwise the Dynamixel port is opened."""

    name = "gello"

    def __init__(self, config: GelloConfig, keys: KeySource | None = None, bus: DynamixelBus | None = None) -> None:
        self.config = config
        ids = list(config.joint_ids) + ([config.gripper_id] if config.gripper_id is not None else [])
        self.bus = bus or DynamixelBus(config.port, config.baudrate, ids)
        self.keys = keys or TerminalKeys()

    def read(self) -> LeaderCommand:
        raw = self.bus.read()
        n = len(self.config.joint_ids)
        gripper = self.config.gripper(raw[n]) if self.config.gripper_id is not None else 0.0
        done, discard = _episode_keys(self.keys())
        return LeaderCommand(self.config.joints(raw[:n]), gripper, done, discard)

    def close(self) -> None:
        self.bus.close()
        if isinstance(self.keys, TerminalKeys):
            self.keys.close()


# -- scripted ----------------------------------------------------------------------------------------


@dataclass
class Waypoint:
    joints: np.ndarray
    gripper: float
    hold: int = 0  # extra ticks to stay here (e.g. while the gripper closes)


@dataclass
class ScriptedLeader(Leader):
    """Plays waypoints: from the arm's pose at `start`, moves linearly in joint space to each
    waypoint at `speed` rad per tick (the largest joint sets the pace), holds, and ends."""

    waypoints: list[Waypoint]
    speed: float = 0.04
    name: str = "scripted"
    interactive: bool = False
    _plan: list[tuple[np.ndarray, float]] = field(default_factory=list, repr=False)
    _tick: int = 0

    def start(self, arm) -> None:
        here = arm.read_joints().copy()
        gripper = 0.0
        plan = []
        for wp in self.waypoints:
            target = np.asarray(wp.joints, dtype=np.float64)
            n = max(1, int(math.ceil(np.max(np.abs(target - here)) / self.speed - 1e-9)))
            plan += [(here + (target - here) * (i + 1) / n, gripper) for i in range(n)]
            gripper = wp.gripper
            plan += [(target, gripper)] * (wp.hold + 1)
            here = target
        self._plan, self._tick = plan, 0

    def read(self) -> LeaderCommand:
        if not self._plan:
            raise RuntimeError("start() the leader before reading it")
        i = min(self._tick, len(self._plan) - 1)
        self._tick += 1
        joints, gripper = self._plan[i]
        return LeaderCommand(joints.copy(), gripper, done=self._tick >= len(self._plan))

    @classmethod
    def from_json(cls, path: str | Path, speed: float = 0.04) -> "ScriptedLeader":
        """[{"joints": [...], "gripper": 0|1, "hold": 0}, ...] played on any arm."""
        try:
            raw = json.loads(Path(path).read_text())
            return cls([Waypoint(np.asarray(w["joints"], float), float(w.get("gripper", 0)), int(w.get("hold", 0)))
                        for w in raw], speed)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: not a waypoint file ([{{\"joints\": [...], \"gripper\": 0}}, ...]): {exc}") from None


class SimPickPlaceLeader(ScriptedLeader):
    """The scripted pick-and-place of the simulated scene, re-planned by IK at every episode
    start (objects move between episodes)."""

    def __init__(self, pick: str = "tomato", place: str = "pan", speed: float = 0.04) -> None:
        super().__init__([], speed)
        self.pick, self.place = pick, place

    def start(self, arm) -> None:
        self.waypoints = pick_place_script(arm, self.pick, self.place)
        super().start(arm)


def _down_pose(position: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # tool z pointing down, x forward
    pose[:3, 3] = position
    return pose


def pick_place_script(arm, pick: str = "tomato", place: str = "pan", hover: float = 0.12,
                      grasp_depth: float = -0.012, settle: int = 5, close: int = 10, lift_hold: int = 3,
                      drop_height: float = 0.05) -> list[Waypoint]:
    """Waypoints of a top-down pick of object `pick` and a drop over `place`, solved by IK in the
    simulated arm's current scene (objects' positions come from the simulator).

    Measured on the simulated UR5e (40 scenes, tomato resting in the pan afterwards): the tool
    point 1 cm above the tomato's centre, closing at once, succeeded 50 %: the Robotiq's fingers
    close unevenly and push a shallowly held tomato away. Closing 1.2 cm below the centre, after
    `settle` ticks at the grasp pose (the servo lags), with `close` ticks to close and `lift_hold`
    before moving on: 40/40."""
    from atm_bench.envs.real.kinematics import solve_ik

    if not hasattr(arm, "object_positions"):
        raise UserError("a generated pick-and-place script needs the simulated arm; on hardware pass "
                        "--script waypoints.json")
    objects = arm.object_positions()
    if pick not in objects or place not in objects:
        raise UserError(f"objects in the scene: {sorted(objects)}")
    a, b = objects[pick], objects[place]
    grasp = a + [0, 0, grasp_depth]
    points = [(a + [0, 0, hover], 0.0, 0), (grasp, 0.0, settle), (grasp, 1.0, close),
              (a + [0, 0, hover + 0.03], 1.0, lift_hold), (b + [0, 0, hover + 0.03], 1.0, 0),
              (b + [0, 0, drop_height], 1.0, 0), (b + [0, 0, drop_height], 0.0, 6), (b + [0, 0, hover + 0.03], 0.0, 0)]
    seed = arm.read_joints()
    waypoints = []
    for position, gripper, hold in points:
        joints, err = solve_ik(arm.tool_pose, _down_pose(position), seed, arm.joint_lower, arm.joint_upper)
        if err > 1e-2:
            raise RuntimeError(f"no IK solution reaching {np.round(position, 3).tolist()} (error {err:.3f})")
        waypoints.append(Waypoint(joints, gripper, hold))
        seed = joints
    return waypoints
