"""The evaluation loop and its results store: durable records, resume, corrupt lines, videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atm_bench.agents.base import Agent, get_agent, register_agent
from atm_bench.bench.results import ResultsStore, record_key, success_table
from atm_bench.bench.video import read_mp4, write_mp4
from atm_bench.errors import UserError


def rec(**kw):
    base = {"agent": "a", "suite": "libero_goal", "task": 0, "init_state": 0, "seed": 0, "protocol": "atm",
            "preset": "none", "horizon": 600, "success": True, "steps": 10, "seconds": 1.0}
    return {**base, **kw}


def test_store_appends_reads_and_skips_corrupt_lines(tmp_path, capsys):
    store = ResultsStore(tmp_path / "r.jsonl")
    assert store.records() == []
    store.append(rec(init_state=0))
    store.append(rec(init_state=1, success=False))
    with open(store.path, "a") as f:
        f.write("{not json}\n")
        f.write(json.dumps({"agent": "a"}) + "\n")  # valid JSON, not a record
        f.write('{"agent": "a", "suite": "libero_go')  # a crash mid-write: partial last line
    store.append(rec(init_state=2))  # must not glue onto the partial line
    report = store.read()
    assert [r["init_state"] for r in report.records] == [0, 1, 2]
    assert report.bad_lines == [3, 4, 5]
    assert "skipped 3 corrupt or partial line(s)" in capsys.readouterr().err
    assert record_key(rec(init_state=2)) in store.keys()
    with pytest.raises(ValueError, match="lacks"):
        store.append({"agent": "a"})


def test_success_table_groups_by_task():
    rows = success_table([rec(task=1, success=True), rec(task=1, success=False, steps=30), rec(task=0)])
    assert [(r["task"], r["episodes"], r["successes"]) for r in rows] == [(0, 1, 1), (1, 2, 1)]
    assert rows[1]["success_rate"] == 0.5 and rows[1]["mean_steps"] == 20


def test_video_round_trip(tmp_path):
    frames = [np.full((20, 36, 3), 10 * i, np.uint8) for i in range(12)]  # sides not multiples of 16
    path = write_mp4(tmp_path / "v" / "x.mp4", frames, fps=20)
    video = read_mp4(path)
    assert video.shape == (12, 32, 48, 3)
    assert abs(int(video[5, 5, 5, 0]) - 50) <= 3
    assert [p.name for p in path.parent.iterdir()] == ["x.mp4"]


def test_video_frames_draw_tracks_and_panels_at_one_size():
    """Tracks change the pixels along them (views at twice their size) and nowhere far from
    them; panels add a view's width; every frame of a video gets the video's layout."""
    from atm_bench.agents.base import VideoOverlay
    from atm_bench.bench.video import TRACK_SCALE, compose_frame, compose_video

    rng = np.random.default_rng(0)
    views = (rng.integers(0, 60, (128, 128, 3), dtype=np.uint8), rng.integers(0, 60, (128, 128, 3), dtype=np.uint8))
    track = np.stack([np.linspace(0.2, 0.8, 8), np.full(8, 0.5)], axis=-1)[None]  # one point, left to right
    plain = compose_frame(views, None)
    assert plain.shape == (128, 256, 3) and np.array_equal(plain, np.concatenate(views, axis=1))
    drawn = compose_frame(views, VideoOverlay(tracks={"agentview": track}), scale=TRACK_SCALE)
    up = np.concatenate([np.repeat(np.repeat(v, 2, axis=0), 2, axis=1) for v in views], axis=1)
    assert drawn.shape == up.shape == (256, 512, 3)
    changed = np.abs(drawn.astype(int) - up).max(axis=-1) > 30
    ys, xs = np.nonzero(changed)
    assert changed[128, 51:205].mean() > 0.9  # along the path (y = 0.5, x from 0.2 to 0.8 of 256 px)
    assert abs(ys - 128).max() <= 4 and xs.min() >= 51 - 4 and xs.max() <= 205 + 4  # and nowhere else
    assert not changed[:, 256:].any()  # the wrist view has no tracks

    goal = np.full((32, 32, 3), 200, np.uint8)
    frames = list(compose_video([(views, VideoOverlay(panels=(goal,))), (views, VideoOverlay()), (views, None)]))
    assert [f.shape for f in frames] == [(128, 384, 3)] * 3  # one view wider, on every frame
    assert (frames[0][:, 256:] == 200).all() and (frames[1][:, 256:] == 0).all()
    mixed = list(compose_video([(views, VideoOverlay(tracks={"agentview": track})), (views, None)]))
    assert [f.shape for f in mixed] == [(256, 512, 3)] * 2
    assert np.array_equal(mixed[1], up)


def test_registry(tmp_path):
    assert get_agent("expert").name == "expert"
    with pytest.raises(UserError, match="unknown agent"):
        get_agent("no-such-agent")
    with pytest.raises(UserError, match="cannot load"):
        get_agent("atm_bench.nothing:Agent")

    class Mine(_StillAgent):
        name = "mine"

    register_agent("mine", Mine)
    assert get_agent("mine") is Mine
    with pytest.raises(TypeError):
        register_agent("bad", dict)


# -- the loop on the real simulator ----------------------------------------------------------


class InterruptingExpert(get_agent("expert")):
    """The expert, but Ctrl-C arrives after `budget` control steps."""

    budget = 10**9

    def act_vector(self, vector_env, obs):
        InterruptingExpert.budget -= 1
        if InterruptingExpert.budget < 0:
            raise KeyboardInterrupt
        return super().act_vector(vector_env, obs)


def _outcomes(records):
    keep = ("task", "init_state", "episode_seed", "success", "steps", "horizon")
    return sorted(tuple(r[k] for k in keep) for r in records)


@pytest.mark.sim
def test_resumed_evaluation_matches_an_uninterrupted_one(tmp_path):
    """Expert on libero_goal task 1 (bowl on stove), 2 episodes, physics only.

    Uninterrupted: 2 async workers. Interrupted: 1 synchronous env, Ctrl-C inside episode 2,
    then rerun. Same records: outcomes depend on (seed, task, init state) only.
    """
    from atm_bench.bench.evaluation import EvalConfig, evaluate

    base = EvalConfig(agent="expert", suite="libero-goal", tasks=(1,), episodes=2, render_quality="none",
                      videos=0, horizon=300)
    full = evaluate(get_agent("expert")(), EvalConfig(**{**base.__dict__, "n_envs": 2}), tmp_path / "a",
                    progress=False)
    assert len(full) == 2

    sync = EvalConfig(**{**base.__dict__, "n_envs": 1, "asynchronous": False})
    first_len = next(r["steps"] for r in full if r["init_state"] == 0)
    InterruptingExpert.budget = first_len + 20
    with pytest.raises(KeyboardInterrupt):
        evaluate(InterruptingExpert(), sync, tmp_path / "b", progress=False)
    partial = ResultsStore(tmp_path / "b" / "results.jsonl").records()
    assert [r["init_state"] for r in partial] == [0]

    InterruptingExpert.budget = 10**9
    resumed = evaluate(InterruptingExpert(), sync, tmp_path / "b", progress=False)
    assert len(ResultsStore(tmp_path / "b" / "results.jsonl").records()) == 2  # episode 0 not rerun
    assert _outcomes(resumed) == _outcomes(full)


@pytest.mark.sim
def test_evaluation_writes_videos_and_respects_the_horizon(tmp_path):
    from atm_bench.bench.evaluation import EvalConfig, evaluate

    config = EvalConfig(agent="still", suite="libero_goal", tasks=(0,), episodes=2, n_envs=1, horizon=6, videos=1,
                        asynchronous=False)
    records = evaluate(_StillAgent(), config, tmp_path / "plain", progress=False)
    assert [(r["init_state"], r["steps"], r["success"]) for r in records] == [(0, 6, False), (1, 6, False)]
    video = read_mp4(tmp_path / "plain" / records[0]["video"])
    assert video.shape == (7, 128, 256, 3)  # the reset frame + 6 steps, both views side by side
    assert "video" not in records[1]
    assert list((tmp_path / "plain" / "configs").glob("eval_still_seed0_task0_*.json"))

    # The same episodes with the agent's overlay: a track across the agentview (at twice the size).
    from atm_bench.agents.base import VideoOverlay

    track = np.stack([np.linspace(0.1, 0.9, 8), np.full(8, 0.3)], axis=-1)[None]

    class Showing(_StillAgent):
        calls = []

        def video_overlay(self, i):
            Showing.calls.append(i)
            return VideoOverlay(tracks={"agentview": track})

    records = evaluate(Showing(), config, tmp_path / "overlay", progress=False)
    drawn = read_mp4(tmp_path / "overlay" / records[0]["video"]).astype(int)
    assert drawn.shape == (7, 256, 512, 3) and len(Showing.calls) == 7  # only the recorded episode asks
    up = np.repeat(np.repeat(video, 2, axis=1), 2, axis=2).astype(int)
    diff = np.abs(drawn - up).max(axis=-1)  # (T, H, W)
    near = np.zeros(diff.shape[1:], bool)
    near[77 - 6:77 + 7, 26 - 6:230 + 7] = True  # y = 0.3 of 256 px, x from 0.1 to 0.9
    assert diff[:, 77, 40:216].mean() > 40  # the track's pixels changed in every frame
    assert diff[:, ~near].mean() < 4  # elsewhere only the codec's noise


# -- faults ---------------------------------------------------------------------------------------


class _Crashing:
    """Picklable env wrapper factory: the env raises inside `step` while its episode's init state
    is in `bad` and fewer than `times` crashes of that episode happened (counted in a file, so the
    count survives the restart of the env)."""

    def __init__(self, counter, bad, times):
        self.counter, self.bad, self.times = str(counter), set(bad), times

    def __call__(self, env):
        import gymnasium as gym

        outer = self

        class Crash(gym.Wrapper):
            def reset(self, **kw):
                self.index = self.env.next_init_state
                self.steps = 0
                return self.env.reset(**kw)

            def step(self, action):
                self.steps += 1
                if self.index in outer.bad and self.steps == 3:
                    import os

                    count = int(open(outer.counter).read()) if os.path.exists(outer.counter) else 0
                    if count < outer.times:
                        open(outer.counter, "w").write(str(count + 1))
                        raise RuntimeError("simulated MuJoCo instability")
                return self.env.step(action)

        return Crash(env)


class _Dying:
    """Picklable env wrapper factory: the worker process itself dies (`os._exit`, as a native abort
    in MuJoCo would) at step 3 of init state 1, the first time only (counted in a file)."""

    def __init__(self, counter):
        self.counter = str(counter)

    def __call__(self, env):
        import gymnasium as gym

        outer = self

        class Die(gym.Wrapper):
            def reset(self, **kw):
                self.index, self.steps = self.env.next_init_state, 0
                return self.env.reset(**kw)

            def step(self, action):
                import os

                self.steps += 1
                if self.index == 1 and self.steps == 3 and not os.path.exists(outer.counter):
                    open(outer.counter, "w").close()
                    os._exit(1)
                return self.env.step(action)

        return Die(env)


class _StillAgent(Agent):
    name = "still"
    wrapper = None

    def fit(self, data, budget): ...
    def reset(self, task): ...
    def act(self, obs): return np.zeros((len(obs["joint_states"]), 7))
    def flops_per_step(self, obs): return {}
    def save(self, directory): ...
    def load(self, directory): ...
    def env_wrapper(self): return self.wrapper


def _fault_config():
    from atm_bench.bench.evaluation import EvalConfig

    return EvalConfig(agent="still", suite="libero_goal", tasks=(0,), episodes=3, n_envs=1, horizon=5, videos=0,
                      asynchronous=False, render_quality="none")


@pytest.mark.sim
def test_a_crashed_env_is_restarted_and_its_episode_retried_once_then_recorded_as_error(tmp_path, capsys):
    from atm_bench.bench.evaluation import evaluate
    from atm_bench.tables import comparison_rows

    agent = _StillAgent()
    agent.wrapper = _Crashing(tmp_path / "once", bad={1}, times=1)  # crashes once: the retry succeeds
    records = evaluate(agent, _fault_config(), tmp_path / "a", progress=False)
    assert sorted((r["init_state"], r["steps"], r.get("status")) for r in records) == \
        [(0, 5, None), (1, 5, None), (2, 5, None)]
    assert "environment crashed on task 0" in capsys.readouterr().err

    agent.wrapper = _Crashing(tmp_path / "always", bad={1}, times=10)  # crashes every time
    records = evaluate(agent, _fault_config(), tmp_path / "b", progress=False)
    errors = [r for r in records if r.get("status") == "error"]
    assert [(r["init_state"], r["success"]) for r in errors] == [(1, False)]
    assert "simulated MuJoCo instability" in errors[0]["error"] and len(records) == 3
    headers, rows = comparison_rows(records, with_paper=False)
    assert headers[-1] == "errors" and rows[0][-1] == "1" and rows[0][2] == "0.00 ± 0.00"


@pytest.mark.sim
def test_an_exception_in_the_agent_is_raised_not_retried_as_an_env_crash(tmp_path, capsys):
    from atm_bench.bench.evaluation import evaluate

    class BuggyAgent(_StillAgent):
        def act(self, obs):
            raise RuntimeError("The size of tensor a (384) must match the size of tensor b (768)")

    with pytest.raises(RuntimeError, match="must match the size"):
        evaluate(BuggyAgent(), _fault_config(), tmp_path, progress=False)
    assert "environment crashed" not in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists() or not (tmp_path / "results.jsonl").read_text().strip()


@pytest.mark.sim
def test_a_nan_action_names_the_agent_and_the_step(tmp_path):
    from atm_bench.bench.evaluation import evaluate

    class NaNAgent(_StillAgent):
        calls = 0

        def act(self, obs):
            NaNAgent.calls += 1
            out = np.zeros((len(obs["joint_states"]), 7))
            out[0, 2] = np.nan if NaNAgent.calls == 4 else 0.0
            return out

    with pytest.raises(UserError, match=r"agent 'still' returned a non-finite action .* at step 3 of task 0, init state 0"):
        evaluate(NaNAgent(), _fault_config(), tmp_path, progress=False)


@pytest.mark.sim
def test_the_serial_loop_is_the_evaluation_loop_with_one_env_and_a_step_budget(tmp_path, monkeypatch, capsys):
    """`serial_throughput` runs the evaluation loop itself (one env, this process) for exactly
    its step budget, across episodes (horizon 5: 5 + 5 + 2 steps), and records nothing."""
    from atm_bench.bench.evaluation import serial_throughput

    monkeypatch.chdir(tmp_path)
    agent = _StillAgent()
    out = serial_throughput(agent, _fault_config(), steps=12)
    assert (out["task"], out["env_steps"], out["episodes"]) == (0, 12, 3)
    assert out["steps_per_second"] == pytest.approx(12 / out["seconds"], rel=1e-2)
    assert list(tmp_path.iterdir()) == []  # no results store, no videos
    assert "eval still" not in capsys.readouterr().out  # a measurement, not an evaluation: no task lines


def test_shards_starting_in_the_same_second_keep_their_own_config_snapshots(tmp_path, monkeypatch):
    """On a cluster two shards of one agent-seed start together: neither snapshot may overwrite the other."""
    from atm_bench.bench import evaluation

    class Frozen:
        @staticmethod
        def now(tz):
            from datetime import datetime
            return datetime(2026, 12, 6, 7, 0, 0, tzinfo=tz)

    monkeypatch.setattr(evaluation, "datetime", Frozen)
    for task in (3, 4):
        config = evaluation.EvalConfig(agent="still", suite="libero_goal", tasks=(task,), episodes=1, seed=2)
        evaluation.run_evaluation(_StillAgent(), config, tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "configs").iterdir())
    assert names == ["eval_still_seed2_task3_20261206T070000.json", "eval_still_seed2_task4_20261206T070000.json"]


@pytest.mark.sim
def test_a_worker_process_that_dies_mid_step_is_restarted_not_waited_for(tmp_path, capsys):
    """Two async workers, one killed mid-step: closing the vector env must not wait for the step
    the dead worker never answers (it hung there for good); the episode is retried and recorded."""
    import dataclasses
    import signal

    from atm_bench.bench.evaluation import evaluate

    fired = []

    def hung(signum, frame):  # the old close caught what this raises and went on: the flag tells
        fired.append(True)
        raise TimeoutError("the evaluation hung after a worker died")

    agent = _StillAgent()
    agent.wrapper = _Dying(tmp_path / "died")
    config = dataclasses.replace(_fault_config(), n_envs=2, asynchronous=True)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        records = evaluate(agent, config, tmp_path / "a", progress=False)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert (tmp_path / "died").exists() and not fired
    assert sorted((r["init_state"], r["steps"], r.get("status")) for r in records) == \
        [(0, 5, None), (1, 5, None), (2, 5, None)]
    assert "environment crashed on task 0" in capsys.readouterr().err
