"""Demo generation: resume after an interruption, skip finished tasks, tiny real run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atm_bench.data.episodes import EpisodeFile
from atm_bench.data.generate import GenerateConfig, TaskGenerator, attempt_seed, generate, task_path
from atm_bench.errors import UserError


class FakeSim:
    """Stands in for the simulator: attempt a succeeds unless a % 3 == 1; length 3 + a % 4."""

    calls: list[int] = []
    interrupt_at: int | None = None

    @staticmethod
    def attempt(self, attempt):
        FakeSim.calls.append(attempt)
        if FakeSim.interrupt_at == attempt:
            raise KeyboardInterrupt
        rng = np.random.default_rng(attempt)
        n = 3 + attempt % 4
        attrs = {"init_state_index": -1, "init_state": rng.normal(size=5), "seed": attempt_seed(0, 1, attempt),
                 "attempt": attempt, "init_state_source": "sampled"}
        return attempt % 3 != 1, rng.uniform(-1, 1, (n, 7)), rng.normal(size=(n, 5)), attrs

    @staticmethod
    def render(self, actions, states, attrs):
        from atm_bench.data.episodes import Episode

        n = len(actions)
        rng = np.random.default_rng(int(attrs["attempt"]) + 100)
        obs = {"agentview_rgb": rng.integers(0, 255, (n, 8, 10, 3), dtype=np.uint8),
               "eye_in_hand_rgb": rng.integers(0, 255, (n, 8, 10, 3), dtype=np.uint8),
               "joint_states": rng.normal(size=(n, 7)), "gripper_states": rng.normal(size=(n, 2))}
        dones = np.eye(1, n, n - 1)[0]
        return Episode(actions, states, obs, rewards=dones, dones=dones, attrs=attrs), []  # (episode, env observations)


@pytest.fixture
def fake_sim(monkeypatch):
    FakeSim.calls, FakeSim.interrupt_at = [], None
    monkeypatch.setattr(TaskGenerator, "_attempt", FakeSim.attempt)
    monkeypatch.setattr(TaskGenerator, "_render_episode", FakeSim.render)
    return FakeSim


def _demos(path):
    with EpisodeFile(path) as f:
        f.check()
        return [(f.attrs(n)["attempt"], f.read(n).actions.tolist()) for n in f.demo_names]


def test_interrupted_generation_resumes_to_the_same_file(tmp_path, fake_sim):
    config = GenerateConfig(suite="libero_goal", tasks=(1,), demos=4)
    generate(config, tmp_path / "straight", progress=False)
    straight = _demos(task_path(tmp_path / "straight", "libero_goal", 1))
    assert [a for a, _ in straight] == [0, 2, 3, 5]  # attempts 1 and 4 failed
    assert fake_sim.calls == [0, 1, 2, 3, 4, 5]

    fake_sim.calls, fake_sim.interrupt_at = [], 3
    with pytest.raises(KeyboardInterrupt):
        generate(config, tmp_path / "resumed", progress=False)
    path = task_path(tmp_path / "resumed", "libero_goal", 1)
    assert not path.exists()  # no final file until the task is complete
    parts = path.with_name(path.name + ".parts")
    log = json.loads((parts / "progress.json").read_text())
    assert [(a["attempt"], a["success"]) for a in log["attempts"]] == [(0, True), (1, False), (2, True)]

    fake_sim.calls, fake_sim.interrupt_at = [], None
    reports = generate(config, tmp_path / "resumed", progress=False)
    assert fake_sim.calls == [3, 4, 5]  # nothing redone
    assert reports[0].demos == 4 and reports[0].new_demos == 2
    assert _demos(path) == straight
    assert not parts.exists()

    fake_sim.calls = []
    assert generate(config, tmp_path / "resumed", progress=False)[0].skipped
    assert fake_sim.calls == []


def test_more_demos_extend_a_finished_file(tmp_path, fake_sim):
    generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=2), tmp_path, progress=False)
    fake_sim.calls = []
    generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=4), tmp_path, progress=False)
    assert fake_sim.calls == [3, 4, 5]
    assert [a for a, _ in _demos(task_path(tmp_path, "libero_goal", 1))] == [0, 2, 3, 5]


def test_attempts_bound_and_config_mismatch(tmp_path, fake_sim):
    reports = generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=5, max_attempts=3), tmp_path,
                       progress=False)
    assert reports[0].demos == 2 and reports[0].attempts == 3
    with pytest.raises(UserError, match="made with"):
        generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=6, seed=1), tmp_path, progress=False)
    with pytest.raises(UserError, match="made with"):  # demos of a gentler servo never join the default's
        generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=6, approach=0.08), tmp_path, progress=False)
    with pytest.raises(UserError, match="--approach: servo approach distance must be in"):
        generate(GenerateConfig(suite="libero_goal", tasks=(1,), demos=1, approach=-1.0), tmp_path / "x", progress=False)


@pytest.mark.sim
def test_generate_one_real_demo(tmp_path):
    """The scripted expert on libero_goal task 1 (bowl on stove): one demo, rendered by replay,
    with exact tracks annotated from the depth rendered alongside the frames."""
    from atm_bench.envs.libero.suites import load_init_states
    from atm_bench.tracking.annotate import AnnotateConfig, Annotator
    from atm_bench.tracking.storage import read_tracks

    config = GenerateConfig(suite="libero_goal", tasks=(1,), demos=1, max_attempts=2, tracks="sim", track_points=100)
    report = generate(config, tmp_path, progress=False)[0]
    assert report.demos == 1
    # the GL implementation that rendered it is recorded with the data (pixels depend on it)
    recorded = json.loads((tmp_path / "libero_goal" / "generation.json").read_text())["tasks"][0]["renderer"]
    assert recorded == report.renderer and recorded["renderer"] and recorded["version"]
    with EpisodeFile(report.path) as f:
        f.check()
        assert f.instruction == "put the bowl on the stove" and f.upright_on_disk
        episode = f.read("demo_0")
    n = len(episode)
    assert 20 < n < 600
    assert episode.obs["agentview_rgb"].shape == (n, 128, 128, 3)
    assert episode.obs["eye_in_hand_rgb"].shape == (n, 128, 128, 3)
    assert episode.states.shape[0] == n and episode.dones[-1] == 1 and episode.dones[:-1].sum() == 0
    # the two views differ, and frames change over the episode
    assert np.abs(episode.obs["agentview_rgb"].astype(int) - episode.obs["eye_in_hand_rgb"]).mean() > 10
    assert np.abs(episode.obs["agentview_rgb"][0].astype(int) - episode.obs["agentview_rgb"][-1]).mean() > 1
    # upright: the table (bright, bottom of agentview) is below the dark wall/background at the top
    agent = episode.obs["agentview_rgb"][0].astype(float).mean(axis=(1, 2))
    assert agent[-32:].mean() > agent[:16].mean()
    # a sampled init state, not one of the 50 fixed evaluation states
    fixed = load_init_states("libero_goal", 1)
    assert np.abs(fixed - episode.attrs["init_state"]).max(axis=1).min() > 1e-6
    # tracks came with the demo: every frame, >= 100 points per view, some of them moving
    for view in ("agentview", "eye_in_hand"):
        tracks = read_tracks(report.path, "demo_0", view)
        assert tracks.tracks.shape[0] == n and tracks.tracks.shape[1] >= 100 and tracks.vis.any()
        assert np.ptp(tracks.tracks, axis=0).max() > 0.05
        assert tracks.on_robot.any() and not tracks.on_robot.all()  # the sim tracker knows the robot's points
    annotator = Annotator(AnnotateConfig(tracker="sim"), "libero_goal")
    assert annotator.pending(report.path) == ([], 1)  # nothing left for `tracks annotate`
    annotator.close()
    np.testing.assert_allclose(episode.states[0][1:10], episode.attrs["init_state"][1:10], atol=0.05)
