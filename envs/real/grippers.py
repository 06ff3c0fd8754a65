"""Grippers of the real arm: a Robotiq 2F through its URCap socket (port 63352, the common UR5
set-up), a gripper on one of the controller's digital outputs, or none. `set(closed)` takes a
float in [0, 1] (0 open, 1 closed); `state()` returns the measured opening as a (1,) array."""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod

import numpy as np

from atm_bench.errors import UserError


class Gripper(ABC):
    @abstractmethod
    def set(self, closed: float) -> None:
        ...

    @abstractmethod
    def state(self) -> np.ndarray:
        ...

    def close(self) -> None:
        """Release the connection."""


class NoGripper(Gripper):
    def __init__(self) -> None:
        self._closed = 0.0

    def set(self, closed: float) -> None:
        self._closed = float(closed)

    def state(self) -> np.ndarray:
        return np.array([self._closed])


class RobotiqSocketGripper(Gripper):
    """Robotiq 2F-85/140 through the Robotiq URCap's ASCII socket: `SET POS n` (0 open .. 255
    closed), `GET POS`. Activates on connect."""

    PORT = 63352

    def __init__(self, host: str, port: int = PORT, speed: int = 255, force: int = 100, timeout: float = 2.0) -> None:
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise UserError(f"cannot reach the Robotiq gripper socket at {host}:{port} ({exc}); is the Robotiq "
                            "URCap installed and the robot program running? Or pass --gripper none/digital:<pin>")
        self._buffer = b""
        self._send("SET ACT 1")
        self._send("SET GTO 1")
        self._send(f"SET SPE {int(speed)}")
        self._send(f"SET FOR {int(force)}")

    def _send(self, line: str) -> str:
        self._sock.sendall(line.encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(1024)
            if not chunk:
                raise ConnectionError("the Robotiq socket closed")
            self._buffer += chunk
        reply, self._buffer = self._buffer.split(b"\n", 1)
        return reply.decode().strip()

    def set(self, closed: float) -> None:
        self._send(f"SET POS {int(round(np.clip(closed, 0.0, 1.0) * 255))}")

    def state(self) -> np.ndarray:
        reply = self._send("GET POS")  # "POS 123"
        return np.array([int(reply.split()[-1]) / 255.0])

    def close(self) -> None:
        self._sock.close()


class DigitalOutGripper(Gripper):
    """A pneumatic or simple electric gripper on standard digital output `pin` (high = closed)."""

    def __init__(self, host: str, pin: int) -> None:
        from atm_bench.envs.real._optional import require

        rtde_io = require("rtde_io", "ur-rtde", "the digital-output gripper")
        self._io = rtde_io.RTDEIOInterface(host)
        self.pin = pin
        self._closed = 0.0

    def set(self, closed: float) -> None:
        self._closed = float(closed >= 0.5)
        self._io.setStandardDigitalOut(self.pin, bool(self._closed))

    def state(self) -> np.ndarray:
        return np.array([self._closed])


def make_gripper(spec: str, host: str) -> Gripper:
    """`robotiq`, `digital:<pin>` or `none`."""
    if spec == "robotiq":
        return RobotiqSocketGripper(host)
    if spec == "none":
        return NoGripper()
    if spec.startswith("digital:"):
        try:
            return DigitalOutGripper(host, int(spec.split(":", 1)[1]))
        except ValueError:
            pass
    raise UserError(f"unknown gripper {spec!r}; valid: robotiq, digital:<pin> (e.g. digital:0), none")
