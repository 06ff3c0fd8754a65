"""Exact simulator tracks: projection accuracy, occlusion and non-square images on a small
constructed MuJoCo scene, then the real LIBERO pipeline (annotate, resume, draw)."""

import numpy as np
import pytest

pytestmark = pytest.mark.sim

CARD_AXES = "1 0 0 0 0.4472136 0.8944272"  # the camera's orientation: flat discs facing the camera
# project to exact circles, whose pixel centroid is the projection of their centre

SCENE = f"""
<mujoco>
  <visual><quality offsamples="0"/><global offwidth="160" offheight="160"/></visual>
  <worldbody>
    <light pos="0 -1 3" dir="0 0.3 -1"/>
    <camera name="cam" pos="0 -1 0.5" xyaxes="{CARD_AXES}" fovy="50"/>
    <geom group="1" name="floor" type="plane" size="3 3 0.1" rgba=".7 .7 .7 1"/>
    <body name="mover" pos="0 0 0.3">
      <joint name="slide" type="slide" axis="1 0 0"/>
      <geom group="1" name="box" type="box" size="0.05 0.05 0.05" rgba="1 0 0 1"/>
    </body>
    <body name="card_a" pos="0.25 0.2 0.25" xyaxes="{CARD_AXES}"><geom group="1" type="cylinder" size="0.12 0.001" rgba="0 0 1 1"/></body>
    <body name="card_b" pos="-0.466 0.156 0.13" xyaxes="{CARD_AXES}"><geom group="1" type="cylinder" size="0.1 0.001" rgba="0 1 0 1"/></body>
    <body name="card_c" pos="0.389 -0.071 0.12" xyaxes="{CARD_AXES}"><geom group="1" type="cylinder" size="0.08 0.001" rgba="1 1 0 1"/></body>
  </worldbody>
</mujoco>
"""
H, W = 60, 100  # non-square on purpose


@pytest.fixture(scope="module")
def scene():
    import mujoco

    from atm_bench.envs.libero.rendering import SceneRenderer

    model = mujoco.MjModel.from_xml_string(SCENE)
    renderer = SceneRenderer(model, None, ["cam"], H, W, quality="reference")
    yield model, renderer
    renderer.close()


def _states(model, slide):
    """Flattened states [time, qpos, qvel] for a sequence of slide positions."""
    states = np.zeros((len(slide), 1 + model.nq + model.nv))
    states[:, 1] = slide
    return states


def test_projection_matches_rendered_pixels(scene):
    import mujoco

    from atm_bench.tracking.sim import SimReplay, project

    model, renderer = scene
    replay = SimReplay(renderer, model, _states(model, [0.0]), views=["cam"])
    replay.pose(0)
    seg = renderer.render(replay.data, segmentation=True)["cam"].segmentation
    for name in ("card_a", "card_b", "card_c"):
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        rows, cols = np.nonzero(np.isin(seg, np.nonzero(model.geom_bodyid == body)[0]))
        assert len(rows) > 60
        centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])  # pixel centres at +0.5
        xy, _ = project(replay.xpos[0, body], replay.cam_pos["cam"][0], replay.cam_mat["cam"][0],
                        replay.fovy["cam"], H, W)
        assert np.abs(xy * [W, H] - centroid).max() < 0.1, (name, xy * [W, H], centroid)


def test_lifted_points_reproject_and_agree_with_depth(scene):
    from atm_bench.tracking.sim import SimReplay

    model, renderer = scene
    replay = SimReplay(renderer, model, _states(model, [0.0, 0.1]), views=["cam"])
    rows, cols = np.mgrid[0:H:3, 0:W:3]
    xy = np.stack([(cols.ravel() + 0.5) / W, (rows.ravel() + 0.5) / H], -1)
    res = replay.track("cam", np.concatenate([np.zeros((len(xy), 1)), xy], 1))
    np.testing.assert_allclose(res.tracks[0], xy, atol=1e-5)
    bodies, local = replay.lift("cam", np.concatenate([np.zeros((len(xy), 1)), xy], 1))
    box = model.body("mover").id
    on_box = bodies == box
    assert on_box.any() and (bodies == 0).any()
    # the box slides 0.1 m along x between the frames: its points move right, the rest stay
    assert np.all(res.tracks[1, on_box, 0] > res.tracks[0, on_box, 0] + 0.02)
    np.testing.assert_allclose(res.tracks[1, bodies == 0], res.tracks[0, bodies == 0], atol=1e-6)


def test_occlusion_by_a_passing_box(scene):
    from atm_bench.tracking.sim import SimReplay, project

    model, renderer = scene
    slide = np.linspace(-0.6, 0.6, 25)
    replay = SimReplay(renderer, model, _states(model, slide), views=["cam"])
    behind = np.array([0.0, 1.5, 0.0])  # on the floor, on the camera's line through the box's path
    xy, _ = project(behind, replay.cam_pos["cam"][0], replay.cam_mat["cam"][0], replay.fovy["cam"], H, W)
    on_box = np.array([0, 0.5, 0.5])  # placeholder, replaced below
    # a point on the box's face at frame 0
    box_xy, _ = project(np.array([-0.6, -0.05, 0.3]), replay.cam_pos["cam"][0], replay.cam_mat["cam"][0],
                        replay.fovy["cam"], H, W)
    on_box = [0, *box_xy]
    res = replay.track("cam", np.array([[0, *xy], on_box]))
    hidden = np.abs(slide) < 0.03  # the box's half-width 0.05, seen from 2.5x further away
    free = np.abs(slide) > 0.08
    assert not res.vis[hidden, 0].any() and res.vis[free, 0].all()
    np.testing.assert_allclose(res.tracks[:, 0], np.broadcast_to(xy, (25, 2)), atol=1e-6)
    assert res.vis[:, 1].all() and np.all(np.diff(res.tracks[:, 1, 0]) > 0)
    # leaving the image makes a point invisible
    off = replay.track("cam", np.array([[0, 0.99, 0.5]]))
    assert off.vis[0, 0]


@pytest.fixture(scope="module")
def libero_file(tmp_path_factory):
    from tracking_episodes import make_task_file

    from atm_bench.envs.libero.env import LiberoEnv

    env = LiberoEnv("libero_goal", 0, image_size=(96, 128), render_quality="fast")
    try:
        root = tmp_path_factory.mktemp("data")
        path = root / "libero_goal" / f"{env.spec_task.name}_demo.hdf5"
        path.parent.mkdir()
        make_task_file(env, path, demos=2, steps=16)
    finally:
        env.close()
    return root, path


def test_annotate_sim_resume_and_show(libero_file, tmp_path, capsys):
    from atm_bench.cli import main
    from atm_bench.data.episodes import EpisodeFile
    from atm_bench.tracking.storage import read_tracks, tracks_info

    root, path = libero_file
    args = ["tracks", "annotate", "--suite", "libero-goal", "--tasks", "0", "--data-dir", str(root),
            "--points", "60", "--grid", "2"]
    assert main(args) == 0
    assert "annotated 2 demos (0 already done)" in capsys.readouterr().out
    assert main(args) == 0
    assert "annotated 0 demos (2 already done)" in capsys.readouterr().out
    info = tracks_info(path, "demo_1")
    assert info["tracker"] == "sim" and info["views"] == ["agentview", "eye_in_hand"]
    with EpisodeFile(path) as ef:
        T = ef.length("demo_1")
    for view in ("agentview", "eye_in_hand"):
        vt = read_tracks(path, "demo_1", view)
        assert vt.tracks.shape == (T, 68, 2) and vt.vis.shape == (T, 68) and vt.query.shape == (68, 3)
        frames = vt.query[:, 0].astype(int)
        np.testing.assert_allclose(vt.tracks[frames, np.arange(68)], vt.query[:, 1:], atol=1e-5)
        assert vt.vis[frames, np.arange(68)].all()
        assert vt.on_robot.shape == (68,) and vt.on_robot.dtype == bool  # stored by the sim tracker
    assert read_tracks(path, "demo_1", "eye_in_hand").on_robot.any()  # the gripper fingers are in view
    out = tmp_path / "x.png"
    assert main(["tracks", "show", str(path), "--demo", "1", "--view", "eye_in_hand", "--frame", "10",
                 "--out", str(out)]) == 0
    import imageio.v3 as iio

    assert iio.imread(out).shape == (96 * 4, 128 * 4, 3)


def test_sim_tracks_follow_the_gripper(libero_file):
    """A point lifted on the gripper at frame 0 lands at frame T-1 on a pixel that, lifted
    again, gives the same 3-D point (within 3 mm) on the same body."""
    from atm_bench.data.episodes import EpisodeFile
    from atm_bench.envs.libero.env import LiberoEnv
    from atm_bench.tracking.sim import SimReplay

    _, path = libero_file
    with EpisodeFile(path) as ef:
        states, attrs = ef.array("demo_0", "states"), ef.attrs("demo_0")
        frames = ef.frames("demo_0", "eye_in_hand_rgb")
    env = LiberoEnv("libero_goal", 0, image_size=(96, 128), render_quality="fast")
    env.reset(seed=3, options={"init_state": 3})  # another placement: the recorded one is restored below
    try:
        replay = SimReplay(env.renderer, env.sim.model._model, states, keep_rgb=True,
                           body_poses=(attrs["body_pos"], attrs["body_quat"]))
        np.testing.assert_array_equal(replay.rgb["eye_in_hand"], frames)  # the replay is the recording
        model, T = replay.model, len(states)
        grid = np.stack(np.meshgrid(np.linspace(0.05, 0.95, 12), np.linspace(0.05, 0.95, 12)), -1).reshape(-1, 2)
        q0 = np.concatenate([np.zeros((len(grid), 1)), grid], 1)
        bodies, _ = replay.lift("agentview", q0)
        arm = np.array(["gripper" in model.body(int(b)).name or "link" in model.body(int(b)).name for b in bodies])
        assert arm.sum() >= 3
        res = replay.track("agentview", q0[arm])
        moved = np.linalg.norm((res.tracks[-1] - res.tracks[0]) * [128, 96], axis=-1)
        assert moved.max() > 3  # the arm moved in the image
        last = np.concatenate([np.full((arm.sum(), 1), T - 1), res.tracks[-1]], 1)
        keep = res.vis[-1]
        b1, l1 = replay.lift("agentview", last[keep])
        assert (b1 == bodies[arm][keep]).mean() > 0.8
    finally:
        env.close()



def test_sim_points_on_the_arm_and_gripper_are_on_the_robot_and_the_rest_not(libero_file):
    """Query points at pixels that the segmentation render shows on the arm or gripper are flagged
    on the robot; points on the table, the objects and the fixtures are not. Pixels whose 3x3
    neighbourhood is one body only (away from silhouettes), at the first and the last frame."""
    from atm_bench.data.episodes import EpisodeFile
    from atm_bench.envs.libero.env import LiberoEnv
    from atm_bench.tracking.sim import VIEW_CAMERAS, SimReplay

    _, path = libero_file
    with EpisodeFile(path) as ef:
        states, attrs = ef.array("demo_0", "states"), ef.attrs("demo_0")
    env = LiberoEnv("libero_goal", 0, image_size=(96, 128), render_quality="fast")
    try:
        replay = SimReplay(env.renderer, env.sim.model._model, states,
                           body_poses=(attrs["body_pos"], attrs["body_quat"]))
        model = replay.model
        names = [model.body(b).name for b in range(model.nbody)]
        arm = np.array([n.startswith(("robot0_link", "gripper0_")) for n in names])
        scene = np.array([n == "table" or n.endswith("_main") or n.startswith("wooden_cabinet") for n in names])
        counts = {"arm": 0, "scene": 0}
        for view, camera in VIEW_CAMERAS.items():
            for frame in (0, replay.num_frames - 1):
                replay.pose(frame)
                seg = env.renderer.render(replay.data, segmentation=True)[camera].segmentation
                body = np.where(seg >= 0, model.geom_bodyid[np.maximum(seg, 0)], -1)
                window = np.lib.stride_tricks.sliding_window_view(body, (3, 3))
                inner = np.full(body.shape, -1)
                inner[1:-1, 1:-1] = np.where((window == window[..., 1:2, 1:2]).all(axis=(-1, -2)), body[1:-1, 1:-1], -1)
                rows, cols = np.nonzero(inner >= 0)
                kind = inner[rows, cols]
                queries = np.stack([np.full(len(rows), frame), (cols + 0.5) / 128, (rows + 0.5) / 96], axis=1)
                on_robot = replay.track(view, queries).on_robot
                assert on_robot[arm[kind]].all(), (view, frame)
                assert not on_robot[scene[kind]].any(), (view, frame)
                counts["arm"] += int(arm[kind].sum())
                counts["scene"] += int(scene[kind].sum())
        assert counts["arm"] > 200 and counts["scene"] > 2000  # both kinds were looked at
    finally:
        env.close()
