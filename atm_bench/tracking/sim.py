"""Exact point tracks from the simulator state.

For a query pixel at its query frame we cast a ray from the camera through the pixel into the
rendered scene (the same model the renderer draws, decimated meshes included) and take the
first surface hit: that gives the 3-D point and the geom it lies on. The point is attached to
that geom's body and expressed in the body's frame; at every frame it moves with the body
(forward kinematics of the replayed state) and is projected through the camera, which for the
wrist view moves with the arm. The body also says whether the point is on the robot
(`is_robot_body`), which stage 1 can use to train on the robot's or the objects' points alone.
A point is invisible where it leaves the image, lies behind the camera, or where the depth
buffer at its projected position is nearer than the point by more than a tolerance (something
occludes it, or it is on a surface turned away).

Why rays instead of a segmentation render at each query frame: ATM's sampling gives every
point its own random query frame, so a segmentation pass would be needed at nearly every frame
(it costs as much as the colour render). A ray per query point is ~10 us. The depth buffer is
needed at every frame for visibility; it comes with the colour frames at no extra cost, so
`SimReplay` can render frames, depth and poses in one pass (`keep_rgb=True`), or take depth that
was rendered elsewhere.

The camera model, the rays and which bodies are the robot live in the env layer
(`atm_bench.envs.libero.rays`), shared with the wrapper that answers the same question at the live
state in evaluation (`SimReplay.robot_at` here, over stored states, for training).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from atm_bench.envs.libero.rays import (NO_HIT_DISTANCE, ROBOT_BODY_NAME, cast_rays, focal_length,  # noqa: F401
                                        is_robot_body, pixel_rays, pose_kinematics, render_geomgroup, robot_bodies)
from atm_bench.tracking.base import TrackResult, VideoTracker, check_queries

# The dataset view names and the LIBERO cameras they come from.
VIEW_CAMERAS = {"agentview": "agentview", "eye_in_hand": "robot0_eye_in_hand"}
# Off-image positions are kept within one image size of the frame. A point near the camera
# plane (the wrist camera passes close to things) projects to +-1e4; unclipped, such invisible
# points dominated the track transformer's MSE and it did not learn (seen at the quick preset).
TRACK_MARGIN = 1.0
# Frames of body poses and depth handled at once when projecting (bounds memory for long videos).
_FRAME_BLOCK = 64


@dataclass(frozen=True)
class VisibilityConfig:
    """A point at distance d along the camera axis is visible where the depth buffer at one of
    the (up to) 4 pixel centres around its projection is >= d - (abs_tol + rel_tol * d).
    The 2x2 neighbourhood keeps points on silhouettes and slanted surfaces visible; the
    tolerances absorb depth quantisation and the pixel grid (a pixel spans ~6 mm at 1 m)."""

    abs_tol: float = 0.005
    rel_tol: float = 0.01


def project(points: np.ndarray, cam_pos: np.ndarray, cam_mat: np.ndarray, fovy: float, height: int,
            width: int) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) -> normalised (x, y) (..., 2) and depth along the camera axis (...).
    Off-image positions are bounded by TRACK_MARGIN (they are invisible there anyway).

    `cam_pos` (..., 3) and `cam_mat` (..., 3, 3) (columns = camera axes in world) broadcast
    against the points' leading dimensions."""
    rel = points - cam_pos
    local = np.einsum("...ij,...i->...j", cam_mat, rel)  # R^T (p - c)
    depth = -local[..., 2]
    f = focal_length(fovy, height)
    safe = np.where(np.abs(depth) > 1e-9, depth, 1e-9)
    u = width / 2 + f * local[..., 0] / safe
    v = height / 2 - f * local[..., 1] / safe
    xy = np.clip(np.stack([u / width, v / height], axis=-1), -TRACK_MARGIN, 1.0 + TRACK_MARGIN)
    return xy, depth


def fixture_poses_from_xml(xml: str, model) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Poses of the joint-less bodies (fixtures) as a saved scene XML records them.

    LIBERO places fixtures by writing `body_pos` into the model at reset, randomly, and the
    flattened state does not hold them; LIBERO datasets keep the scene XML per demo
    (`model_file`) so a replay can restore them."""
    import mujoco

    poses = {}
    for body in ET.fromstring(xml).iter("body"):
        name = body.get("name")
        if not name:
            continue
        body_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        if body_id <= 0 or model.body_jntnum[body_id] != 0 or body.get("pos") is None:
            continue
        pos = np.array(body.get("pos").split(), dtype=np.float64)
        quat = np.array(body.get("quat", "1 0 0 0").split(), dtype=np.float64)
        poses[body_id] = (pos, quat / np.linalg.norm(quat))
    return poses


class SimReplay:
    """One episode's states replayed in a scene: body and camera poses and depth per frame.

    renderer: the `SceneRenderer` whose cameras include the views' cameras (its model is used for
    kinematics, rays and projection, so tracks agree with what it draws).
    physics_model: the model the renderer copies fixture poses from (the env's); fixture poses
    from `fixture_xml` are written into it.
    depths: depth frames already rendered ({view: (T, H, W)} metres); missing views are rendered.
    fixture_xml / body_poses: where the demo's fixtures were (LIBERO's per-demo `model_file`, or
    the model's `body_pos` (nbody, 3) and `body_quat` (nbody, 4) at recording time); without
    them the fixtures stay where the renderer's env last put them.
    keep_rgb: also keep the colour frames of the render pass (`self.rgb[view]`).
    depth: render the depth frames not given (visibility needs them); False skips the render pass
    for uses that only cast rays and pose bodies (`lift`, `robot_at`; not `track`).
    """

    def __init__(
        self,
        renderer,
        physics_model,
        states: np.ndarray,
        views: Sequence[str] = tuple(VIEW_CAMERAS),
        depths: Mapping[str, np.ndarray] | None = None,
        fixture_xml: str | None = None,
        body_poses: tuple[np.ndarray, np.ndarray] | None = None,
        keep_rgb: bool = False,
        depth: bool = True,
        visibility: VisibilityConfig = VisibilityConfig(),
        progress=None,
    ) -> None:
        import mujoco

        self._mj = mujoco
        self.renderer = renderer
        self.model = renderer.model
        self.physics_model = physics_model
        self.data = mujoco.MjData(self.model)
        self.states = np.asarray(states, dtype=np.float64)
        nq = self.model.nq
        if self.states.ndim != 2 or self.states.shape[1] < 1 + nq:
            raise ValueError(f"states must be (T, >= {1 + nq}) flattened MuJoCo states; got {self.states.shape}")
        self.views = list(views)
        self.robot_body = robot_bodies(self.model)
        self.height, self.width = renderer.height, renderer.width
        self.visibility = visibility
        self.cam_ids = {v: self._camera_id(VIEW_CAMERAS.get(v, v)) for v in self.views}
        self.fovy = {v: float(self.model.cam_fovy[c]) for v, c in self.cam_ids.items()}
        self.geomgroup = render_geomgroup(renderer)
        if fixture_xml:
            self.apply_fixture_poses(fixture_poses_from_xml(fixture_xml, self.model))
        if body_poses is not None:
            pos, quat = (np.asarray(a, dtype=np.float64) for a in body_poses)
            if pos.shape != (self.model.nbody, 3) or quat.shape != (self.model.nbody, 4):
                raise ValueError(f"body poses must be ({self.model.nbody}, 3) and ({self.model.nbody}, 4)")
            self.apply_fixture_poses({b: (pos[b], quat[b]) for b in range(1, self.model.nbody)})
        self._record(dict(depths or {}), keep_rgb, depth, progress)

    # -- set-up -------------------------------------------------------------------------------

    def _camera_id(self, name: str) -> int:
        cam = self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_CAMERA, name)
        if cam < 0:
            raise ValueError(f"no camera {name!r} in the scene")
        return int(cam)

    def apply_fixture_poses(self, poses: Mapping[int, tuple[np.ndarray, np.ndarray]]) -> None:
        for model in {id(self.model): self.model, id(self.physics_model): self.physics_model}.values():
            for body, (pos, quat) in poses.items():
                model.body_pos[body] = pos
                model.body_quat[body] = quat

    @property
    def num_frames(self) -> int:
        return int(len(self.states))

    def pose(self, t: int) -> None:
        """Put `self.data` in the state of frame t (kinematics and cameras only; no physics)."""
        pose_kinematics(self.model, self.data, self.states[t, 1:1 + self.model.nq], self.physics_model)

    def _record(self, depths: dict[str, np.ndarray], keep_rgb: bool, depth: bool, progress) -> None:
        """One pass over the frames: poses always; depth (and colour) where not given (and asked)."""
        T, nbody = self.num_frames, self.model.nbody
        self.xpos = np.empty((T, nbody, 3))
        self.xmat = np.empty((T, nbody, 3, 3))
        self.cam_pos = {v: np.empty((T, 3)) for v in self.views}
        self.cam_mat = {v: np.empty((T, 3, 3)) for v in self.views}
        for v, d in depths.items():
            if d.shape != (T, self.height, self.width):
                raise ValueError(f"depth for {v} must be {(T, self.height, self.width)}; got {d.shape}")
        render = list(self.views) if keep_rgb else [v for v in self.views if v not in depths and depth]
        self.depth = {v: np.asarray(depths[v], dtype=np.float16) for v in self.views if v in depths}
        for v in render:
            self.depth.setdefault(v, np.empty((T, self.height, self.width), dtype=np.float16))
        self.rgb = {v: np.empty((T, self.height, self.width, 3), dtype=np.uint8) for v in self.views} if keep_rgb else {}
        for t in range(T):
            self.pose(t)
            self.xpos[t] = self.data.xpos
            self.xmat[t] = self.data.xmat.reshape(nbody, 3, 3)
            for v, c in self.cam_ids.items():
                self.cam_pos[v][t] = self.data.cam_xpos[c]
                self.cam_mat[v][t] = self.data.cam_xmat[c].reshape(3, 3)
            if render:
                frames = self.renderer.render(self.data, depth=True)
                for v in render:
                    frame = frames[VIEW_CAMERAS.get(v, v)]
                    if v not in depths:
                        self.depth[v][t] = frame.depth
                    if keep_rgb:
                        self.rgb[v][t] = frame.rgb
            if progress is not None:
                progress()

    # -- tracking -------------------------------------------------------------------------------

    def lift(self, view: str, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Attach each query point to a body: (body ids (N,), points in body frames (N, 3))."""
        n = len(queries)
        bodies = np.zeros(n, dtype=np.int64)
        local = np.zeros((n, 3))
        frames = queries[:, 0].astype(np.int64)
        for t in np.unique(frames):
            idx = np.nonzero(frames == t)[0]
            self.pose(int(t))
            hit, dists, origin, rays = cast_rays(self.model, self.data, self.cam_ids[view], queries[idx, 1:],
                                                 self.height, self.width, self.geomgroup)
            points = origin + dists[:, None] * rays
            bodies[idx] = hit
            for i, body, point in zip(idx, hit, points):
                local[i] = self.data.xmat[body].reshape(3, 3).T @ (point - self.data.xpos[body])
        return bodies, local

    def robot_at(self, view: str, xy: np.ndarray) -> np.ndarray:
        """(T, N) bool: whether the pixel of each normalised image point xy (N, 2) shows the robot
        at each frame (the first surface its ray hits is on a robot body)."""
        xy = np.asarray(xy, dtype=np.float64)
        T, n = self.num_frames, len(xy)
        queries = np.concatenate([np.repeat(np.arange(T), n)[:, None], np.tile(xy, (T, 1))], axis=1)
        bodies, _ = self.lift(view, queries)
        return self.robot_body[bodies].reshape(T, n)

    def track(self, view: str, queries: np.ndarray) -> TrackResult:
        """Tracks (T, N, 2), visibility (T, N) and whether each point is on the robot (N,), of
        query points (N, 3) = (frame, x, y). A point stays on the body it was lifted onto, so
        being on the robot at its query frame is being on the robot throughout."""
        queries = check_queries(queries, self.num_frames)
        bodies, local = self.lift(view, queries)
        T, n = self.num_frames, len(queries)
        tracks = np.empty((T, n, 2), dtype=np.float32)
        vis = np.empty((T, n), dtype=bool)
        for start in range(0, T, _FRAME_BLOCK):
            stop = min(T, start + _FRAME_BLOCK)
            world = self.xpos[start:stop, bodies] + np.einsum("tnij,nj->tni", self.xmat[start:stop, bodies], local)
            xy, depth = project(world, self.cam_pos[view][start:stop, None], self.cam_mat[view][start:stop, None],
                                self.fovy[view], self.height, self.width)
            vis[start:stop] = self._visible(view, start, xy, depth)
            tracks[start:stop] = xy
        # A query point is visible at its own query frame by construction; depth quantisation
        # must not say otherwise.
        inside = (queries[:, 1] >= 0) & (queries[:, 1] < 1) & (queries[:, 2] >= 0) & (queries[:, 2] < 1)
        vis[queries[:, 0].astype(np.int64), np.arange(n)] |= inside
        return TrackResult(tracks, vis, self.robot_body[bodies])

    def _visible(self, view: str, start: int, xy: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Visibility of points at frames start.. from their projection and the depth buffer."""
        H, W = self.height, self.width
        near = self.model.vis.map.znear * self.model.stat.extent
        inside = (xy[..., 0] >= 0) & (xy[..., 0] < 1) & (xy[..., 1] >= 0) & (xy[..., 1] < 1) & (depth > near)
        buf = self.depth[view]
        cols = xy[..., 0] * W - 0.5
        rows = xy[..., 1] * H - 0.5
        j0 = np.clip(np.floor(cols), 0, W - 1).astype(np.int64)
        i0 = np.clip(np.floor(rows), 0, H - 1).astype(np.int64)
        j1 = np.clip(j0 + 1, 0, W - 1)
        i1 = np.clip(i0 + 1, 0, H - 1)
        t = np.arange(start, start + xy.shape[0])[:, None]
        seen = np.maximum.reduce([buf[t, i0, j0], buf[t, i0, j1], buf[t, i1, j0], buf[t, i1, j1]]).astype(np.float64)
        cfg = self.visibility
        return inside & (seen >= depth - (cfg.abs_tol + cfg.rel_tol * depth))


class SimTracker(VideoTracker):
    """The tracker interface over one view of a `SimReplay` (the video is not looked at)."""

    name = "sim"

    def __init__(self, replay: SimReplay, view: str) -> None:
        self.replay = replay
        self.view = view

    def track(self, video: np.ndarray | None, queries: np.ndarray) -> TrackResult:
        if video is not None and len(video) != self.replay.num_frames:
            raise ValueError(f"video has {len(video)} frames but the replay has {self.replay.num_frames}")
        return self.replay.track(self.view, queries)
