"""Out-of-domain videos: `atm-bench data import-videos` turns MP4s into action-free episodes with
flow tracks, and the track transformer trains (smoke preset) on a mixture of such sources with
the mixture recorded in its config."""

import json

import numpy as np
import pytest


def _video(path, T, H, W, dx):
    import cv2
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((H * 2, W * 2, 3)) * 255).astype(np.uint8), (5, 5), 0)
    frames = [cv2.warpAffine(tex, np.float32([[1, 0, dx * t - W / 2], [0, 1, -H / 2]]), (W, H),
                             borderMode=cv2.BORDER_REFLECT) for t in range(T)]
    iio.imwrite(path, np.stack(frames), fps=10, codec="libx264", macro_block_size=1)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from atm_bench.cli import main

    root = tmp_path_factory.mktemp("videos")
    for kind in ("human", "robot"):
        (root / kind).mkdir()
    _video(root / "human" / "h1.mp4", 20, 48, 80, 1.0)  # non-square
    _video(root / "human" / "h2.mp4", 12, 48, 80, -0.8)
    _video(root / "robot" / "r1.mp4", 16, 64, 64, 0.6)
    (root / "human.json").write_text(json.dumps({"h1.mp4": "wipe the table", "h2.mp4": "wipe the table"}))
    (root / "robot.json").write_text(json.dumps({"r1.mp4": "push the block"}))
    common = ["--points", "30", "--grid", "2", "--size", "32", "--clip-frames", "10"]
    assert main(["data", "import-videos", str(root / "human"), "--instruction-file", str(root / "human.json"),
                 "--out", str(root / "human_demo.hdf5")] + common) == 0
    assert main(["data", "import-videos", str(root / "robot"), "--instruction-file", str(root / "robot.json"),
                 "--out", str(root / "other_robot_demo.hdf5"), "--kind", "other_robot"] + common) == 0
    return root


def test_import_videos_writes_action_free_episodes_with_tracks(imported, capsys):
    from atm_bench.cli import main
    from atm_bench.data.episodes import EpisodeFile
    from atm_bench.tracking.storage import read_tracks

    path = imported / "human_demo.hdf5"
    with EpisodeFile(path) as ef:
        assert ef.instruction == "wipe the table" and len(ef) == 4  # h1: 10 + 10 frames, h2: 10 + 2
        ep = ef.read("demo_0")
        assert ep.action_free and ep.actions is None and ep.obs["agentview_rgb"].shape == (10, 32, 32, 3)
        assert ef.header.env_args["source"] == "human"
    vt = read_tracks(path, "demo_0", "agentview")
    assert vt.tracks.shape == (10, 38, 2)
    # the texture moves right: tracked points move right too (flow on the imported frames)
    dx = np.median(vt.tracks[-1, :, 0] - vt.tracks[0, :, 0])
    assert dx > 0
    # rerunning resumes from the parts (nothing re-tracked) and gives the same file
    before = read_tracks(path, "demo_3", "agentview").tracks
    assert main(["data", "import-videos", str(imported / "human"), "--instruction-file", str(imported / "human.json"),
                 "--out", str(path), "--points", "30", "--grid", "2", "--size", "32", "--clip-frames", "10"]) == 0
    np.testing.assert_array_equal(read_tracks(path, "demo_3", "agentview").tracks, before)
    capsys.readouterr()
    assert main(["data", "import-videos", str(imported / "human"), "--instruction-file",
                 str(imported / "robot.json"), "--out", str(path)]) == 2
    assert "no instruction for h1.mp4" in capsys.readouterr().err


def test_track_transformer_trains_on_a_mixture(imported, tmp_path):
    from atm_bench.cli import main

    mixture = imported / "mixture.json"
    mixture.write_text(json.dumps({"sources": [
        {"name": "human", "kind": "human", "files": ["human_demo.hdf5"], "weight": 1.0},
        {"name": "panda-like", "kind": "other_robot", "files": ["other_robot_demo.hdf5"], "weight": 3.0,
         "views": ["agentview"]}]}))
    out = tmp_path / "track_model"
    assert main(["train", "tracks", "--mixture", str(mixture), "--preset", "smoke", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "track_transformer"
    names = {s["name"]: s for s in config["mixture"]}
    assert names["panda-like"]["weight"] == 3.0 and names["human"]["kind"] == "human"
    assert names["human"]["train_demos"] + names["human"]["val_demos"] == 4
    assert sorted(config["instructions"]) == ["push the block", "wipe the table"]
    from atm_bench.atm.stages import load_track_model

    model, _ = load_track_model(out)
    assert model.cfg.image_hw == tuple(config["model"]["image_hw"])


def test_mixture_errors_are_user_errors(imported, tmp_path):
    from atm_bench.atm.mixture import load_mixture
    from atm_bench.errors import UserError

    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"sources": [{"name": "x", "kind": "alien", "files": [str(imported / "human_demo.hdf5")]}]}))
    with pytest.raises(UserError, match="kind"):
        load_mixture(bad)
    bad.write_text(json.dumps({"sources": [{"name": "x", "files": ["nowhere/*.hdf5"]}]}))
    with pytest.raises(UserError, match="no file matches"):
        load_mixture(bad)
