"""Headless rendering of LIBERO scenes, stock or fast.

`reference` reproduces robosuite's stock pixels (MSAA, reflections, the assets' full meshes).
`fast` is for the data we generate and evaluate ourselves: it renders a *render-only copy* of
the scene whose meshes are decimated (see `meshes.py`), with MSAA, reflections and skybox off.
Physics never sees the render model: it is the same XML with other mesh files, posed from the
physics state before each frame, so simulation stays byte-identical to LIBERO's.

Why this is fast on a CPU: Mesa's llvmpipe costs ~0.14 ms per 1,000 triangles per camera, and
LIBERO's scenes carry 240-310 k visual triangles (the Panda arm alone ~130 k). Decimating them
cuts the per-camera cost several-fold; MSAA off shrinks readPixels.

Images come out upright (row 0 at the top); OpenGL's bottom-up rows are flipped here, once.
"""

from __future__ import annotations

import atexit
import os
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from atm_bench.envs.libero.meshes import decimated_xml
from atm_bench.envs.libero.runtime import configure_environment
from atm_bench.errors import UserError

RENDER_QUALITIES = ("reference", "fast")
_gl_owner: int | None = None  # the process whose GL state this module's renderers use
_gl_info: dict[str, str] | None = None  # the GL implementation this process rendered with


def gl_info() -> dict[str, str] | None:
    """The GL renderer and version strings of this process's first scene renderer (None before
    one is made), e.g. "llvmpipe (LLVM 15.0.6, 256 bits)" and "... Mesa 22.3.6". Pixels depend on
    them (llvmpipe compiles its rasteriser for the host), so generated data records them."""
    return None if _gl_info is None else dict(_gl_info)


def _remember_gl_info() -> None:
    """Read the current context's renderer strings once per process."""
    global _gl_info
    if _gl_info is not None:
        return
    from OpenGL import GL

    _gl_info = {name: (GL.glGetString(getattr(GL, f"GL_{name.upper()}")) or b"").decode(errors="replace")
                for name in ("renderer", "version")}


def claim_gl() -> None:
    """Before a GL context is made: refuse, with the fix, in a process forked from one that had
    already rendered. The GL driver's state (and its threads, which do not survive a fork) is
    inherited broken, and the first render hung for good instead of failing."""
    global _gl_owner
    if _gl_owner is not None and _gl_owner != os.getpid():
        raise UserError(
            "this process was forked from one that had already rendered, and GL state does not survive a fork: "
            "make vector envs with the spawn start method (gym.make_vec(..., vector_kwargs={'context': 'spawn'}) "
            "or atm_bench.envs.libero.vector.make_vector_env), or make them before rendering anything")
    _gl_owner = os.getpid()

# Renderers still open at interpreter exit are closed before MuJoCo's EGL module terminates
# its display (atexit runs handlers last-registered-first, so ours is registered after the
# first GL context exists); otherwise EGL prints noisy, harmless errors during teardown.
_LIVE: "weakref.WeakSet[SceneRenderer]" = weakref.WeakSet()
_EXIT_HOOK = False


def _close_live_renderers() -> None:
    for renderer in list(_LIVE):
        renderer.close()


def _track(renderer: "SceneRenderer") -> None:
    global _EXIT_HOOK
    _LIVE.add(renderer)
    if not _EXIT_HOOK:
        atexit.register(_close_live_renderers)
        _EXIT_HOOK = True


@dataclass
class Frame:
    """One camera's image: rgb (H, W, 3) uint8 upright; depth (H, W) metres, if asked."""

    rgb: np.ndarray
    depth: np.ndarray | None = None
    segmentation: np.ndarray | None = None


class SceneRenderer:
    """Renders named cameras of a MuJoCo scene into numpy arrays.

    One GL context and one MuJoCo render context per renderer, made when the renderer is
    made (inside the process that uses it, never inherited across a fork) and reused for
    every frame and every reset.
    """

    def __init__(
        self,
        physics_model,
        xml: str | None,
        cameras: Sequence[str],
        height: int,
        width: int,
        quality: str = "fast",
    ) -> None:
        configure_environment()
        claim_gl()
        import mujoco

        if quality not in RENDER_QUALITIES:
            raise ValueError(f"render quality must be one of {RENDER_QUALITIES}, got {quality!r}")
        self.quality = quality
        self.height, self.width = int(height), int(width)
        self.physics_model = physics_model
        if quality == "fast":
            if xml is None:
                raise ValueError("the fast renderer needs the scene's XML to build its render model")
            self.model = mujoco.MjModel.from_xml_string(decimated_xml(xml))
            self.model.vis.quality.offsamples = 0
            self.model.vis.global_.offwidth = self.width
            self.model.vis.global_.offheight = self.height
            self.data = mujoco.MjData(self.model)
        else:
            self.model = physics_model
            self.data = None
        self.camera_ids = [self._camera_id(name) for name in cameras]
        self.camera_names = list(cameras)

        self._gl = mujoco.GLContext(max(self.width, self.model.vis.global_.offwidth),
                                    max(self.height, self.model.vis.global_.offheight))
        self._gl.make_current()
        _remember_gl_info()
        self._con = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._scene = mujoco.MjvScene(self.model, maxgeom=1000)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[0] = 0  # collision meshes hidden, as robosuite does
        self._option.geomgroup[1] = 1
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._perturb = mujoco.MjvPerturb()
        if quality == "fast":
            for flag in ("mjRND_REFLECTION", "mjRND_SKYBOX"):
                self._scene.flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        self._viewport = mujoco.MjrRect(0, 0, self.width, self.height)
        self._rgb = np.empty((self.height, self.width, 3), dtype=np.uint8)
        self._depth = np.empty((self.height, self.width), dtype=np.float32)
        self._mujoco = mujoco
        _track(self)

    def _camera_id(self, name: str) -> int:
        import mujoco

        cam_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cam_id < 0:
            names = [self.model.camera(i).name for i in range(self.model.ncam)]
            raise ValueError(f"no camera {name!r} in the scene; cameras: {names}")
        return cam_id

    def _pose(self, physics_data):
        """Pose the render model from the physics state; returns the MjData to draw."""
        if self.data is None:
            return physics_data
        mj = self._mujoco
        self.data.qpos[:] = physics_data.qpos
        self.data.mocap_pos[:] = physics_data.mocap_pos
        self.data.mocap_quat[:] = physics_data.mocap_quat
        # LIBERO places fixtures by writing body_pos/body_quat into the model at reset, and
        # colours change at run time (site visibility, object states): follow physics.
        self.model.body_pos[:] = self.physics_model.body_pos
        self.model.body_quat[:] = self.physics_model.body_quat
        self.model.geom_rgba[:] = self.physics_model.geom_rgba
        self.model.site_rgba[:] = self.physics_model.site_rgba
        mj.mj_kinematics(self.model, self.data)
        mj.mj_camlight(self.model, self.data)
        return self.data

    def render(self, physics_data, depth: bool = False, segmentation: bool = False) -> dict[str, Frame]:
        """Render every camera for the current physics state."""
        mj = self._mujoco
        self._gl.make_current()
        data = self._pose(physics_data)
        frames = {}
        for name, cam_id in zip(self.camera_names, self.camera_ids):
            self._camera.fixedcamid = cam_id
            mj.mjv_updateScene(self.model, data, self._option, self._perturb, self._camera,
                               mj.mjtCatBit.mjCAT_ALL, self._scene)
            mj.mjr_render(self._viewport, self._scene, self._con)
            mj.mjr_readPixels(self._rgb, self._depth if depth else None, self._viewport, self._con)
            frame = Frame(rgb=self._rgb[::-1].copy())
            if depth:
                frame.depth = self.depth_to_metric(self._depth[::-1])
            if segmentation:
                frame.segmentation = self._segment(data)
            frames[name] = frame
        return frames

    def _segment(self, data) -> np.ndarray:
        """Geom id per pixel (-1 for background) for the camera last rendered."""
        mj = self._mujoco
        flags = self._scene.flags
        flags[mj.mjtRndFlag.mjRND_SEGMENT] = 1
        flags[mj.mjtRndFlag.mjRND_IDCOLOR] = 1
        try:
            mj.mjr_render(self._viewport, self._scene, self._con)
            seg = np.empty((self.height, self.width, 3), dtype=np.uint8)
            mj.mjr_readPixels(seg, None, self._viewport, self._con)
        finally:
            flags[mj.mjtRndFlag.mjRND_SEGMENT] = 0
            flags[mj.mjtRndFlag.mjRND_IDCOLOR] = 0
        ids = seg[::-1].astype(np.int32)
        seg_id = ids[..., 0] + (ids[..., 1] << 8) + (ids[..., 2] << 16)
        lookup = np.full(self._scene.ngeom + 1, -1, dtype=np.int32)
        for i in range(self._scene.ngeom):
            geom = self._scene.geoms[i]
            if geom.segid != -1 and geom.objtype == mj.mjtObj.mjOBJ_GEOM:
                lookup[geom.segid + 1] = geom.objid
        seg_id[seg_id >= lookup.shape[0]] = 0
        return lookup[seg_id]

    def depth_to_metric(self, depth: np.ndarray) -> np.ndarray:
        """OpenGL depth buffer values in [0, 1] -> distance along the camera axis in metres."""
        extent = self.model.stat.extent
        near = self.model.vis.map.znear * extent
        far = self.model.vis.map.zfar * extent
        return (near / (1.0 - depth * (1.0 - near / far))).astype(np.float32)

    def close(self) -> None:
        if getattr(self, "_con", None) is not None:
            self._gl.make_current()
            self._con.free()
            self._con = None
            self._gl.free()
