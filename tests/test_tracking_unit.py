"""Flow tracker on synthetic video, storage, CoTracker adapter plumbing, drawing (no simulator)."""

import sys
import textwrap

import h5py
import numpy as np
import pytest

from atm_bench.errors import UserError
from atm_bench.tracking.base import TrackResult
from atm_bench.tracking.flow import LucasKanadeTracker


def _texture(h, w, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 4 + 2, w // 4 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w + 8, h + 8), interpolation=cv2.INTER_CUBIC)


def _shifting_video(T=12, H=48, W=80, dx=0.7, dy=-0.4):
    """A textured image translated by (dx, dy) pixels per frame (sub-pixel, non-square)."""
    import cv2

    tex = _texture(H * 2, W * 2)
    frames = []
    for t in range(T):
        m = np.float32([[1, 0, dx * t - W / 2], [0, 1, dy * t - H / 2]])
        frames.append(cv2.warpAffine(tex, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def test_flow_tracks_a_known_translation_both_ways_non_square():
    T, H, W, dx, dy = 12, 48, 80, 0.7, -0.4
    video = _shifting_video(T, H, W, dx, dy)
    rng = np.random.default_rng(0)
    q = np.concatenate([rng.integers(0, T, (60, 1)), rng.uniform(0.3, 0.7, (60, 2))], 1)
    res = LucasKanadeTracker().track(video, q)
    t = np.arange(T)[:, None]
    expect = np.stack([q[None, :, 1] + dx * (t - q[None, :, 0]) / W, q[None, :, 2] + dy * (t - q[None, :, 0]) / H], -1)
    err = np.abs(res.tracks - expect) * [W, H]
    assert res.vis.mean() > 0.9
    assert np.median(err[res.vis]) < 0.15 and np.percentile(err[res.vis], 95) < 0.5


def test_flow_loses_points_under_an_occluder():
    video = _shifting_video(T=10, dx=0.0, dy=0.0)  # still texture ...
    video[5:, 10:30, 20:50] = 0  # ... covered from frame 5 on
    q = np.array([[0, 35 / 80, 20 / 48], [0, 70 / 80, 40 / 48]])
    res = LucasKanadeTracker().track(video, q)
    assert res.vis[:5].all()
    assert not res.vis[5:, 0].any() and res.vis[5:, 1].all()


def test_storage_round_trip_atomic_and_resumable(tmp_path):
    from atm_bench.tracking.storage import SCRATCH, ViewTracks, has_tracks, read_tracks, tracks_info, write_demo_tracks

    path = tmp_path / "x_demo.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("data/demo_0")
        f["data/demo_0"].create_group(SCRATCH)  # left by an interrupted run
    vt = ViewTracks(TrackResult(np.random.rand(5, 7, 2), np.random.rand(5, 7) > 0.5), np.random.rand(7, 3))
    assert not has_tracks(path, "demo_0")
    write_demo_tracks(path, "demo_0", {"agentview": vt, "eye_in_hand": vt}, {"tracker": "flow"})
    assert has_tracks(path, "demo_0") and tracks_info(path, "demo_0")["tracker"] == "flow"
    back = read_tracks(path, "demo_0", "eye_in_hand")
    np.testing.assert_allclose(back.tracks, vt.tracks.astype(np.float32))
    np.testing.assert_array_equal(back.vis, vt.vis)
    assert back.query.dtype == np.float32 and back.tracks.dtype == np.float32 and back.vis.dtype == bool
    with h5py.File(path, "r") as f:
        assert SCRATCH not in f["data/demo_0"] and set(f["data/demo_0/tracks"]) == {"agentview", "eye_in_hand"}
    with pytest.raises(UserError, match="annotate"):
        read_tracks(path, "demo_0", "frontview")
    assert back.on_robot is None  # a tracker that cannot tell stores no on_robot


def test_on_robot_follows_the_points_and_round_trips(tmp_path):
    """The per-point robot flag survives sampling's select/concat and storage; it is written only
    where every part knows it."""
    from atm_bench.tracking.storage import ON_ROBOT, ViewTracks, read_tracks, write_demo_tracks

    flags = np.array([True, False, False, True, False])
    known = TrackResult(np.random.rand(4, 5, 2), np.ones((4, 5), bool), flags)
    assert known.select([3, 1]).on_robot.tolist() == [True, False]
    assert TrackResult.concat([known, known.select(slice(0, 1))]).on_robot.tolist() == [*flags, True]
    unknown = TrackResult(np.random.rand(4, 2, 2), np.ones((4, 2), bool))
    assert TrackResult.concat([known, unknown]).on_robot is None
    with pytest.raises(ValueError, match="on_robot"):
        TrackResult(np.random.rand(4, 5, 2), np.ones((4, 5), bool), flags[:3])
    path = tmp_path / "x_demo.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("data/demo_0")
    write_demo_tracks(path, "demo_0", {"agentview": ViewTracks(known, np.random.rand(5, 3)),
                                       "eye_in_hand": ViewTracks(unknown, np.random.rand(2, 3))})
    assert read_tracks(path, "demo_0", "agentview").on_robot.tolist() == flags.tolist()
    with h5py.File(path, "r") as f:
        assert f[f"data/demo_0/tracks/agentview/{ON_ROBOT}"].dtype == bool
        assert ON_ROBOT not in f["data/demo_0/tracks/eye_in_hand"]


def test_segments_chain_to_the_whole_video():
    from atm_bench.tracking.cotracker import track_in_segments

    T, v = 23, np.array([0.01, -0.005])

    def segment(start, stop, q):  # exact constant-velocity tracker over frames [start, stop)
        t = np.arange(start, stop)[:, None, None]
        tracks = q[None, :, 1:] + v * (t - start - q[None, :, :1])
        return tracks, np.ones(tracks.shape[:2], bool)

    rng = np.random.default_rng(0)
    q = np.concatenate([rng.integers(0, T, (40, 1)), rng.uniform(0.2, 0.8, (40, 2))], 1)
    res = track_in_segments(segment, T, q, segment_frames=6)
    t = np.arange(T)[:, None, None]
    np.testing.assert_allclose(res.tracks, q[None, :, 1:] + v * (t - q[None, :, :1]), atol=1e-6)
    assert res.vis.all()


def test_cotracker_needs_local_files(tmp_path):
    from atm_bench.tracking.cotracker import CoTracker

    with pytest.raises(UserError, match="git clone"):
        CoTracker(None, None)
    with pytest.raises(UserError, match="no such file"):
        CoTracker(str(tmp_path / "missing.pth"), str(tmp_path))


def test_cotracker_adapter_converts_coordinates(tmp_path, monkeypatch):
    """A stand-in `cotracker` package that echoes its queries (pixels, centres at integers)."""
    pytest.importorskip("torch")
    pkg = tmp_path / "code" / "cotracker"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "predictor.py").write_text(textwrap.dedent("""
        import torch
        class CoTrackerPredictor(torch.nn.Module):
            def __init__(self, checkpoint=None):
                super().__init__()
                self.shift = float(open(checkpoint).read())
            def forward(self, video, queries=None, backward_tracking=False):
                T = video.shape[1]
                t = torch.arange(T, dtype=torch.float32)[:, None]
                x = queries[0, :, 1][None] + self.shift * (t - queries[0, :, 0][None])
                y = queries[0, :, 2][None].expand(T, -1)
                return torch.stack([x, y], -1)[None], torch.ones(1, T, queries.shape[1], dtype=torch.bool)
    """))
    ckpt = tmp_path / "fake.pth"
    ckpt.write_text("2.0")
    monkeypatch.setattr(sys, "path", list(sys.path))
    from atm_bench.tracking.cotracker import CoTracker

    tracker = CoTracker(str(ckpt), str(tmp_path / "code"), device="cpu", segment_frames=4, points_per_call=3)
    video = np.zeros((9, 20, 50, 3), np.uint8)
    q = np.array([[0, 0.5, 0.5], [4, 0.1, 0.9], [8, 0.3, 0.2], [2, 0.7, 0.6]])
    res = tracker.track(video, q)
    t = np.arange(9)[:, None]
    np.testing.assert_allclose(res.tracks[..., 0], q[None, :, 1] + 2.0 * (t - q[None, :, 0]) / 50, atol=1e-5)
    np.testing.assert_allclose(res.tracks[..., 1], np.broadcast_to(q[None, :, 2], (9, 4)), atol=1e-6)


def test_drawing_hides_invisible_parts():
    from atm_bench.tracking.draw import draw_frame

    frames = np.zeros((6, 16, 24, 3), np.uint8)
    tracks = np.zeros((6, 2, 2), np.float32)
    tracks[:, 0] = np.stack([np.linspace(0.1, 0.6, 6), np.full(6, 0.3)], -1)
    tracks[:, 1] = np.stack([np.linspace(0.1, 0.6, 6), np.full(6, 0.8)], -1)
    vis = np.ones((6, 2), bool)
    vis[:, 1] = False
    img = draw_frame(frames, TrackResult(tracks, vis), 5, trail=5, scale=4)
    assert img.shape == (64, 96, 3)
    assert img[16:24].sum() > 0  # the visible point's row (y = 0.3)
    assert img[48:60].sum() == 0  # the invisible one leaves no mark (y = 0.8)


def test_import_videos_into_a_directory_one_file_per_instruction(tmp_path, capsys):
    """`data import-videos --out DIR`: a non-square video resized and cut into clips, flow-tracked,
    in a file named after its instruction; a rerun re-tracks nothing; a video without an
    instruction is a user error that names it."""
    import json

    import imageio.v3 as iio

    from atm_bench.cli import main
    from atm_bench.data.episodes import EpisodeFile
    from atm_bench.tracking.storage import read_tracks

    videos = tmp_path / "videos"
    videos.mkdir()
    iio.imwrite(videos / "a.mp4", _shifting_video(T=14, H=64, W=96, dx=1.0, dy=0.5), fps=10, codec="libx264",
                macro_block_size=1)
    (tmp_path / "instructions.json").write_text(json.dumps({"a.mp4": "Open the drawer"}))
    args = ["data", "import-videos", str(videos), "--instruction-file", str(tmp_path / "instructions.json"),
            "--points", "40", "--grid", "2", "--size", "32", "--clip-frames", "10", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    path = tmp_path / "out" / "open_the_drawer_demo.hdf5"
    assert f"wrote {path}: 2 action-free demos with flow tracks" in capsys.readouterr().out
    with EpisodeFile(path) as ef:
        assert ef.instruction == "Open the drawer" and ef.demo_names == ["demo_0", "demo_1"]
        assert ef.frames("demo_0", "agentview_rgb").shape == (10, 32, 32, 3)
    vt = read_tracks(path, "demo_1", "agentview")
    assert vt.tracks.shape == (4, 48, 2)
    parts = sorted((tmp_path / "out").glob("*.parts/*.hdf5"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    assert len(parts) == 2
    assert main(args) == 0
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # finished clips are neither rewritten nor re-tracked
    np.testing.assert_array_equal(read_tracks(path, "demo_1", "agentview").tracks, vt.tracks)
    (tmp_path / "instructions.json").write_text(json.dumps({"b.mp4": "x"}))
    capsys.readouterr()
    assert main(args) == 2
    assert "no instruction for a.mp4" in capsys.readouterr().err


def test_projection_is_bounded_near_the_camera_plane():
    """A point just in front of (or behind) the camera plane projects to ~1e4 image widths;
    stored coordinates stay within TRACK_MARGIN of the frame, where the point is invisible.
    (Unbounded, such wrist-camera points dominated the track transformer's loss.)"""
    from atm_bench.tracking.sim import TRACK_MARGIN, project

    cam_pos, cam_mat = np.zeros(3), np.eye(3)  # MuJoCo camera: looks along -z, y up
    points = np.array([[0.0, 0.0, -1.0],      # straight ahead: the image centre
                       [0.3, 0.1, -1e-5],     # almost in the camera plane, off axis
                       [0.2, -0.2, 0.5]])     # behind the camera
    xy, depth = project(points, cam_pos, cam_mat, fovy=45.0, height=96, width=128)
    assert np.allclose(xy[0], [0.5, 0.5])
    assert np.all(np.abs(xy) <= 1.0 + TRACK_MARGIN) and depth[2] < 0
    assert xy[1, 0] == 1.0 + TRACK_MARGIN  # far right, pinned to the margin
