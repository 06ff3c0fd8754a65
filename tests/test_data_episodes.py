"""The one episode reader/writer: round trip, the upside-down flip, clear errors on bad files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from atm_bench.data.episodes import (
    Episode,
    EpisodeFile,
    FileHeader,
    merge_task_files,
    observations_to_obs,
    sorted_demo_names,
    task_files,
    write_task_file,
)
from atm_bench.errors import UserError


def make_episode(rng: np.random.Generator, length: int, height: int = 12, width: int = 20) -> Episode:
    """An episode with non-square images whose rows are all different, so a flip shows."""
    observations = []
    for _ in range(length):
        observations.append(
            {
                "agentview": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                "eye_in_hand": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                "joint_states": rng.normal(size=7),
                "gripper_states": rng.normal(size=2),
                "ee_states": rng.normal(size=6),
            }
        )
    return Episode(
        actions=rng.uniform(-1, 1, (length, 7)),
        states=rng.normal(size=(length, 11)),
        obs=observations_to_obs(observations),
        attrs={"init_state_index": 3, "seed": 7, "init_state": rng.normal(size=11)},
    )


HEADER = FileHeader(
    problem_info={"problem_name": "libero_tabletop_manipulation", "language_instruction": "open the drawer"},
    env_args={"env_name": "x", "env_kwargs": {"camera_heights": 12}},
    bddl_file_name="libero_goal/open_the_drawer.bddl",
)


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [make_episode(rng, n) for n in (5, 8, 3)]
    path = write_task_file(tmp_path / "t_demo.hdf5", HEADER, episodes)
    with EpisodeFile(path) as f:
        f.check()
        assert f.instruction == "open the drawer"
        assert f.upright_on_disk
        assert f.demo_names == ["demo_0", "demo_1", "demo_2"]
        assert [f.length(n) for n in f.demo_names] == [5, 8, 3]
        for name, original in zip(f.demo_names, episodes):
            got = f.read(name)
            np.testing.assert_array_equal(got.actions, original.actions)
            np.testing.assert_array_equal(got.states, original.states)
            for key, value in original.obs.items():
                np.testing.assert_array_equal(got.obs[key], value, err_msg=key)
            assert got.dones.tolist() == [0] * (len(original) - 1) + [1]
            assert got.attrs["init_state_index"] == 3 and got.attrs["seed"] == 7
            np.testing.assert_array_equal(got.attrs["init_state"], original.attrs["init_state"])
        np.testing.assert_array_equal(f.frames("demo_1", "agentview_rgb", 2, 4), episodes[1].obs["agentview_rgb"][2:4])
    with h5py.File(path, "r") as raw:
        info = json.loads(raw["data"].attrs["problem_info"])
        assert info["image_convention"] == "upright"
        assert raw["data"].attrs["total"] == 16 and raw["data"].attrs["num_demos"] == 3
        assert raw["data/demo_1/obs/agentview_rgb"].shape == (8, 12, 20, 3)
        np.testing.assert_array_equal(raw["data/demo_1/obs/ee_pos"][()], episodes[1].obs["ee_states"][:, :3])


def test_official_upside_down_file_is_flipped_by_the_reader(tmp_path):
    """An official LIBERO file: images stored upside down, no convention in problem_info."""
    rng = np.random.default_rng(1)
    episode = make_episode(rng, 4)
    upright = episode.obs["agentview_rgb"]
    path = tmp_path / "official_demo.hdf5"
    with h5py.File(path, "w") as f:  # written by hand, the way LIBERO's scripts write it
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"language_instruction": "open the drawer", "problem_name": "p"})
        data.attrs["env_args"] = json.dumps({"env_name": "x"})
        data.attrs["bddl_file_name"] = "x.bddl"
        demo = data.create_group("demo_0")
        demo.attrs["num_samples"] = 4
        demo["actions"] = episode.actions
        demo["states"] = episode.states
        for key, value in episode.obs.items():
            demo[f"obs/{key}"] = value[:, ::-1] if value.dtype == np.uint8 else value
    with EpisodeFile(path) as f:
        f.check()
        assert not f.upright_on_disk
        np.testing.assert_array_equal(f.read("demo_0").obs["agentview_rgb"], upright)
        np.testing.assert_array_equal(f.frames("demo_0", "eye_in_hand_rgb", 1, 3), episode.obs["eye_in_hand_rgb"][1:3])


def test_writer_can_produce_the_official_orientation(tmp_path):
    rng = np.random.default_rng(2)
    episode = make_episode(rng, 3)
    path = write_task_file(tmp_path / "o_demo.hdf5", FileHeader(**{**HEADER.__dict__, "upright": False}), [episode])
    with h5py.File(path, "r") as raw:
        np.testing.assert_array_equal(raw["data/demo_0/obs/agentview_rgb"][()], episode.obs["agentview_rgb"][:, ::-1])
        assert "image_convention" not in json.loads(raw["data"].attrs["problem_info"])
    with EpisodeFile(path) as f:
        np.testing.assert_array_equal(f.read("demo_0").obs["agentview_rgb"], episode.obs["agentview_rgb"])


def test_merge_renumbers_in_order(tmp_path):
    rng = np.random.default_rng(3)
    parts = []
    for i, n in enumerate((2, 4, 3)):
        parts.append(write_task_file(tmp_path / f"part{i}.hdf5", HEADER, [make_episode(rng, n)]))
    merged = merge_task_files(tmp_path / "m_demo.hdf5", HEADER, [(parts[2], "demo_0"), (parts[0], "demo_0")])
    with EpisodeFile(merged) as f:
        assert f.demo_names == ["demo_0", "demo_1"]
        assert [f.length(n) for n in f.demo_names] == [3, 2]


def test_written_files_repeat_byte_for_byte(tmp_path):
    """Split manifests hash the files' bytes, so the same demos and tracks must give the same
    file: every dataset (tracks included) uses a codec whose output depends only on its input
    (h5py's lzf does not: it reads an uninitialised hash table)."""
    import hashlib

    from atm_bench.tracking.base import TrackResult
    from atm_bench.tracking.storage import ViewTracks, write_demo_tracks

    digests = []
    for i in range(2):
        rng = np.random.default_rng(5)
        path = write_task_file(tmp_path / f"{i}_demo.hdf5", HEADER, [make_episode(rng, 7)])
        vt = ViewTracks(TrackResult(rng.random((7, 9, 2)), rng.random((7, 9)) > 0.5), rng.random((9, 3)))
        write_demo_tracks(path, "demo_0", {"agentview": vt, "eye_in_hand": vt}, {"tracker": "sim"})
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    codecs = set()
    with h5py.File(path, "r") as f:
        f.visititems(lambda _, obj: codecs.add(obj.compression) if isinstance(obj, h5py.Dataset) else None)
    assert codecs <= {None, "gzip"} and "gzip" in codecs
    assert digests[0] == digests[1]


def test_demo_names_sort_numerically():
    assert sorted_demo_names(["demo_10", "demo_2", "demo_1", "mask"]) == ["demo_1", "demo_2", "demo_10"]


def test_truncated_and_foreign_files_are_user_errors(tmp_path):
    rng = np.random.default_rng(4)
    path = write_task_file(tmp_path / "t_demo.hdf5", HEADER, [make_episode(rng, 5)])
    truncated = tmp_path / "cut_demo.hdf5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match="cut_demo.hdf5"):
        EpisodeFile(truncated).check()

    foreign = tmp_path / "foreign.hdf5"
    with h5py.File(foreign, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(UserError, match=r"foreign.hdf5: missing 'data'"):
        EpisodeFile(foreign)

    no_images = tmp_path / "noimg_demo.hdf5"
    with h5py.File(path, "r") as src, h5py.File(no_images, "w") as dst:
        src.copy(src["data"], dst)
        del dst["data/demo_0/obs/eye_in_hand_rgb"]
    with pytest.raises(UserError, match=r"noimg_demo.hdf5: missing 'obs/eye_in_hand_rgb' in demo_0"):
        EpisodeFile(no_images).check()

    with pytest.raises(UserError, match="no such file"):
        EpisodeFile(tmp_path / "absent.hdf5")


def test_task_files_lists_a_directory(tmp_path):
    rng = np.random.default_rng(5)
    a = write_task_file(tmp_path / "a_demo.hdf5", HEADER, [make_episode(rng, 2)])
    b = write_task_file(tmp_path / "b_demo.hdf5", HEADER, [make_episode(rng, 2)])
    assert task_files(tmp_path) == [a, b]
    assert task_files(a) == [a]
    with pytest.raises(UserError):
        task_files(tmp_path / "empty")


def test_data_info_cli(tmp_path, capsys):
    from atm_bench.cli import main

    rng = np.random.default_rng(6)
    path = write_task_file(tmp_path / "t_demo.hdf5", HEADER, [make_episode(rng, 4), make_episode(rng, 6)])
    assert main(["data", "info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "open the drawer" in out and "total 10, min 4, mean 5.0, max 6" in out
    with h5py.File(path, "a") as f:
        del f["data/demo_1/actions"]
    assert main(["data", "info", str(path)]) == 2
    assert "t_demo.hdf5: missing 'actions' in demo_1" in capsys.readouterr().err
