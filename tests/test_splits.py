"""Matched splits: deterministic, seeded, disjoint, nested across ablations, hashed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atm_bench.data.episodes import Episode, FileHeader, write_task_file
from atm_bench.data.splits import (
    file_sha256,
    load_split,
    make_split,
    save_split,
    split_task,
    verify_sources,
)
from atm_bench.errors import UserError

NAMES = [f"demo_{i}" for i in range(50)]


def test_split_is_deterministic_and_disjoint():
    a = split_task(NAMES, task=3, seed=0, labelled=10, val_fraction=0.1)
    b = split_task(NAMES, task=3, seed=0, labelled=10, val_fraction=0.1)
    assert a == b
    labelled, videos, validation = a
    assert len(labelled) == 10 and len(validation) == 5 and len(videos) == 45
    assert not set(labelled) & set(validation)
    assert not set(videos) & set(validation)
    assert set(labelled) <= set(videos)
    assert set(videos) | set(validation) == set(NAMES)


def test_seed_and_task_change_the_split():
    base = split_task(NAMES, task=0, seed=0, labelled=10, val_fraction=0.1)
    assert split_task(NAMES, task=0, seed=1, labelled=10, val_fraction=0.1) != base
    assert split_task(NAMES, task=1, seed=0, labelled=10, val_fraction=0.1) != base


def test_ablations_are_nested_and_share_validation():
    two, five, ten = (split_task(NAMES, 2, 0, k, 0.1) for k in (2, 5, 10))
    assert set(two[0]) < set(five[0]) < set(ten[0])
    assert two[2] == five[2] == ten[2]


def test_video_count_and_too_few_demos():
    labelled, videos, _ = split_task(NAMES, 0, 0, 10, 0.1, videos=20)
    assert len(videos) == 20 and set(labelled) <= set(videos)
    with pytest.raises(UserError, match="fewer than"):
        split_task(NAMES[:8], 0, 0, 10, 0.1)


def _fake_suite(tmp_path, n_demos=12, tasks=(0, 2)):
    """Tiny task files named like libero_goal's tasks (real names from the suite)."""
    from atm_bench.envs.libero.suites import list_tasks

    rng = np.random.default_rng(0)
    for index in tasks:
        spec = list_tasks("libero_goal")[index]
        episodes = []
        for _ in range(n_demos):
            n = int(rng.integers(2, 5))
            obs = {
                "agentview_rgb": rng.integers(0, 255, (n, 4, 6, 3), dtype=np.uint8),
                "eye_in_hand_rgb": rng.integers(0, 255, (n, 4, 6, 3), dtype=np.uint8),
                "joint_states": rng.normal(size=(n, 7)),
                "gripper_states": rng.normal(size=(n, 2)),
            }
            episodes.append(Episode(actions=rng.normal(size=(n, 7)), states=rng.normal(size=(n, 9)), obs=obs))
        header = FileHeader({"language_instruction": spec.instruction}, {}, spec.bddl_file)
        write_task_file(tmp_path / "libero_goal" / f"{spec.name}_demo.hdf5", header, episodes)
    return tmp_path


def test_manifest_records_hashes_and_round_trips(tmp_path):
    root = _fake_suite(tmp_path)
    manifest = make_split(root, "libero-goal", labelled=2, seed=0, val_fraction=0.25, tasks=[0, 2])
    again = make_split(root, "libero_goal", labelled=2, seed=0, val_fraction=0.25, tasks=[0, 2])
    assert manifest == again and manifest.manifest_sha256 == again.manifest_sha256
    assert [t.task for t in manifest.tasks] == [0, 2]
    for split in manifest.tasks:
        assert split.sha256 == file_sha256(root / split.file)
        assert len(split.validation) == 3 and len(split.labelled) == 2 and len(split.videos) == 9
        assert not set(split.labelled) & set(split.validation)
    path = save_split(manifest, tmp_path / "split.json")
    loaded = load_split(path)
    assert loaded == manifest and loaded.manifest_sha256 == manifest.manifest_sha256
    verify_sources(loaded, root)

    other = make_split(root, "libero-goal", labelled=2, seed=1, val_fraction=0.25, tasks=[0, 2])
    assert other.manifest_sha256 != manifest.manifest_sha256


def test_edited_manifest_and_changed_sources_are_refused(tmp_path):
    root = _fake_suite(tmp_path, tasks=(0,))
    manifest = make_split(root, "libero-goal", labelled=2, seed=0, tasks=[0])
    path = save_split(manifest, tmp_path / "split.json")
    data = json.loads(path.read_text())
    data["tasks"][0]["labelled"][0] = data["tasks"][0]["validation"][0]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="hash does not match"):
        load_split(path)

    _fake_suite(tmp_path, n_demos=13, tasks=(0,))  # regenerate: different bytes
    with pytest.raises(UserError, match="changed since"):
        verify_sources(manifest, root)


def test_missing_task_file_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="atm-bench data generate"):
        make_split(tmp_path, "libero-goal", tasks=[1])
