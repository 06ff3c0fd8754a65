"""RGB cameras: Intel RealSense (pyrealsense2), any OpenCV source (USB webcam, video file,
stream URL), and the simulated cameras of `SimUR5eArm` (MuJoCo offscreen rendering through
LIBERO's `SceneRenderer` at "reference" quality). Every `read()` returns (H, W, 3) uint8 RGB,
upright; `rotate` fixes a camera mounted sideways or upside down, once, here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from atm_bench.errors import UserError


def _rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    if degrees % 90:
        raise UserError(f"camera rotation must be a multiple of 90 degrees, got {degrees}")
    return np.ascontiguousarray(np.rot90(frame, k=-(degrees // 90) % 4))


class Camera(ABC):
    name: str = "camera"

    @abstractmethod
    def read(self) -> np.ndarray:
        """The latest frame, (H, W, 3) uint8 RGB upright."""

    def close(self) -> None:
        """Release the device."""

    def describe(self) -> dict:
        return {"type": type(self).__name__, "name": self.name}


def realsense_serials() -> list[str]:
    """Serial numbers of the RealSense cameras plugged in (to fill in --cameras)."""
    from atm_bench.envs.real._optional import require

    rs = require("pyrealsense2", "pyrealsense2", "RealSense cameras")
    return [d.get_info(rs.camera_info.serial_number) for d in rs.context().query_devices()]


class RealSenseCamera(Camera):
    """One RealSense's colour stream, selected by serial number (`realsense_serials()`)."""

    def __init__(self, serial: str, width: int = 640, height: int = 480, fps: int = 30, rotate: int = 0,
                 timeout_ms: int = 1000, name: str | None = None) -> None:
        from atm_bench.envs.real._optional import require

        rs = require("pyrealsense2", "pyrealsense2", "RealSense cameras")
        self.serial, self.rotate, self.timeout_ms = str(serial), rotate, timeout_ms
        self.name = name or f"realsense-{serial}"
        self.size = (width, height, fps)
        self._pipeline = rs.pipeline()
        config = rs.config()
        config.enable_device(self.serial)
        config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        try:
            self._pipeline.start(config)
        except RuntimeError as exc:
            raise UserError(f"cannot start RealSense {self.serial} ({exc}); plugged into USB 3? "
                            f"serials found: {realsense_serials() or 'none'}") from None

    def read(self) -> np.ndarray:
        frames = self._pipeline.wait_for_frames(self.timeout_ms)
        color = frames.get_color_frame()
        return _rotate(np.asanyarray(color.get_data()).copy(), self.rotate)

    def close(self) -> None:
        self._pipeline.stop()

    def describe(self) -> dict:
        w, h, fps = self.size
        return {**super().describe(), "serial": self.serial, "width": w, "height": h, "fps": fps, "rotate": self.rotate}


class OpenCVCamera(Camera):
    """A `cv2.VideoCapture` source: a device index (`0`), a video file or a stream URL."""

    def __init__(self, source: int | str, width: int | None = None, height: int | None = None, rotate: int = 0,
                 name: str | None = None) -> None:
        import cv2

        self.source, self.rotate = source, rotate
        self.name = name or f"opencv-{source}"
        self._cap = cv2.VideoCapture(source)
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if not self._cap.isOpened():
            raise UserError(f"cannot open OpenCV camera {source!r} (device index, video file or URL)")
        self._cv2 = cv2

    def read(self) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok:
            raise RuntimeError(f"camera {self.source!r} returned no frame (unplugged, or the video ended)")
        return _rotate(self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB), self.rotate)

    def close(self) -> None:
        self._cap.release()

    def describe(self) -> dict:
        return {**super().describe(), "source": str(self.source), "rotate": self.rotate}


class SimCameraRig:
    """The simulated arm's cameras, one renderer for all: a frame is rendered once per physics
    state, whichever camera asks first."""

    def __init__(self, arm, views: dict[str, str] | None = None, height: int = 128, width: int = 128) -> None:
        from atm_bench.envs.libero.rendering import SceneRenderer
        from atm_bench.envs.real.sim_scene import CAMERAS

        self.arm = arm
        self.views = dict(views or CAMERAS)
        self.renderer = SceneRenderer(arm.physics_model, None, list(self.views.values()), height, width,
                                      quality="reference")
        self._frames: dict[str, np.ndarray] = {}
        self._stamp: tuple | None = None

    def frame(self, view: str) -> np.ndarray:
        data = self.arm.physics_data
        stamp = (float(data.time), id(data), float(np.sum(data.qpos)))
        if stamp != self._stamp:
            rendered = self.renderer.render(data)
            self._frames = {v: rendered[cam].rgb for v, cam in self.views.items()}
            self._stamp = stamp
        return self._frames[view]

    def cameras(self) -> dict[str, "SimCamera"]:
        return {view: SimCamera(self, view) for view in self.views}

    def close(self) -> None:
        self.renderer.close()


class SimCamera(Camera):
    def __init__(self, rig: SimCameraRig, view: str) -> None:
        self.rig, self.name = rig, f"sim-{view}"
        self.view = view

    def read(self) -> np.ndarray:
        return self.rig.frame(self.view).copy()

    def close(self) -> None:
        self.rig.close()  # idempotent: the first camera closed releases the shared renderer

    def describe(self) -> dict:
        return {**super().describe(), "camera": self.rig.views[self.view],
                "height": self.rig.renderer.height, "width": self.rig.renderer.width}


def parse_camera_spec(spec: str, rotate: int = 0, name: str | None = None) -> Camera:
    """`realsense:<serial>`, `opencv:<index|path|url>` -> an opened camera."""
    kind, _, arg = spec.partition(":")
    if kind == "realsense" and arg:
        return RealSenseCamera(arg, rotate=rotate, name=name)
    if kind == "opencv" and arg:
        return OpenCVCamera(int(arg) if arg.isdigit() else arg, rotate=rotate, name=name)
    raise UserError(f"unknown camera {spec!r}; use realsense:<serial> or opencv:<index|file|url>")
