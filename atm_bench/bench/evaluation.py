"""The evaluation loop every agent runs under: vector envs, fixed init states, a named protocol.

Per task, episode k starts from the task's fixed init state k (the protocol's order) with the
per-episode seed `episode_seed(seed, task, k)`, so an episode's outcome does not depend on which
worker ran it, on how many workers there were, or on whether the run was interrupted. Each
worker takes the next pending episode as soon as its current one ends. Every finished episode
is appended to the JSONL results store at once; a rerun skips the episodes already recorded.

Workers run with autoreset disabled and are reset here, each with its own init state
(`set_attr("next_init_state", ...)` then a masked reset). When the queue is empty, idle workers
keep stepping a throw-away episode (a vector env steps all workers together); its outcome is
never recorded.

The first `videos` episodes of each task are saved as MP4: every frame is the observation the
agent acted on (then the episode's last one) with what the agent made of it, its
`Agent.video_overlay(i)` (ATM's predicted tracks drawn on the views, UniPi's sub-goal beside
them; see `bench.video`). `Evaluator.stats` is the throughput of a run (env steps/s of all envs
together) and `serial_throughput` the same agent's in a plain one-env loop, for comparison.
Progress goes to `atm_bench.progress` (the run's display inside `atm-bench run`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from atm_bench import progress as display
from atm_bench.agents.base import TaskInfo
from atm_bench.bench.results import ResultsStore, record_key
from atm_bench.bench.video import VIEWS, compose_video, video_name, write_mp4
from atm_bench.envs.libero.protocols import get_protocol
from atm_bench.envs.libero.spaces import ACTION_DIM
from atm_bench.envs.libero.suites import get_suite, load_init_states
from atm_bench.envs.libero.vector import make_vector_env
from atm_bench.errors import UserError
from atm_bench.io import utc_timestamp, write_json_atomic


@dataclass(frozen=True)
class EvalConfig:
    """What is evaluated and how. `episodes`/`horizon` None = the protocol's values."""

    agent: str
    suite: str
    tasks: tuple[int, ...]
    protocol: str = "atm"
    episodes: int | None = None
    seed: int = 0
    preset: str = "none"
    n_envs: int | None = None  # None: min(protocol's, CPU cores, episodes to run)
    render_quality: str = "fast"
    image_size: int = 128
    horizon: int | None = None  # cap below the protocol's horizon (smoke tests)
    videos: int = 1  # the first `videos` episodes of each task are saved as MP4
    asynchronous: bool = True
    render_devices: tuple[int, ...] = ()  # EGL devices for the env workers (`atm_bench.devices.egl_render_devices`)
    extra: dict[str, Any] = field(default_factory=dict)


def episode_seed(seed: int, task: int, init_state: int) -> int:
    """The env/agent seed of one episode: a function of (run seed, task, init state) only."""
    return int(np.random.SeedSequence([seed, task, init_state]).generate_state(1)[0])


@dataclass(frozen=True)
class EvalStats:
    """Throughput of one `Evaluator.run`: the recorded episodes' env steps (all envs together)
    over the time spent stepping them (`seconds`: env resets, agent and env steps, recording
    frames; env start-up, the agent's per-task `reset` and video encoding excluded), and
    `wall_seconds` of the whole call."""

    episodes: int
    env_steps: int
    seconds: float
    wall_seconds: float
    n_envs: int

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps_per_second": round(self.steps_per_second, 3)}


class _AgentFailed(Exception):
    """An exception the agent raised (its `__cause__`): a bug in the agent, raised as it is, never
    retried or recorded as an env crash."""


@dataclass
class _Running:
    """The episode a worker is running now."""

    index: int  # = init state index; -1 for a throw-away episode on an idle worker
    seed: int
    started: float
    steps: int = 0
    success: bool = False
    frames: list[tuple[tuple[np.ndarray, ...], Any]] | None = None  # (views, agent's overlay) per step


def make_eval_vector_env(config: EvalConfig, task: int, n_envs: int, wrapper: Callable | None = None):
    """The task's vector env (autoreset disabled); `wrapper` wraps each worker's env."""
    return make_vector_env(config.suite, task, n_envs, asynchronous=config.asynchronous, wrapper=wrapper,
                           render_devices=config.render_devices, image_size=config.image_size,
                           render_quality=config.render_quality, protocol=config.protocol)


def close_vector_env(venv, crashed: bool) -> None:
    """Close `venv`; after a crash, terminate its workers instead: a plain close first waits for
    the step still pending, and a worker that died mid-step (a native abort in MuJoCo or the
    renderer) never answers, so the evaluation would hang there for good."""
    try:
        venv.close(terminate=crashed)
    except Exception:  # a dead worker's pipe raised while draining: stop the live workers directly
        for process in getattr(venv, "processes", ()):
            if process.is_alive():
                process.terminate()


class Evaluator:
    """Runs one agent under one `EvalConfig`, writing records to `out_dir/results.jsonl`.

    `out_dir=None` records nothing (every episode is run, none is stored); `step_budget` stops
    the loop after that many env steps (the episodes then in flight are dropped): together, the
    serial throughput loop (`serial_throughput`) is this loop with one env. `results`: another
    file to append to (a cluster shard's, merged later: `ResultsStore.absorb`); an episode recorded
    in it or in `out_dir/results.jsonl` is not run again."""

    def __init__(self, agent, config: EvalConfig, out_dir: str | Path | None, progress: bool = True,
                 step_budget: int | None = None, results: str | Path | None = None) -> None:
        self.agent = agent
        self.config = config
        suite = get_suite(config.suite)
        self.suite = suite.name
        self.protocol = get_protocol(config.protocol)
        self.specs = suite.tasks
        for t in config.tasks:
            if not 0 <= t < len(self.specs):
                raise UserError(f"unknown task index {t} for {config.suite}; valid: 0..{len(self.specs) - 1}")
        self.episodes = config.episodes or self.protocol.episodes_per_task
        self.horizon = suite.horizon(self.protocol, config.horizon)
        if self.episodes < 1:
            raise UserError(f"--episodes must be >= 1, got {self.episodes}")
        if config.videos and config.render_quality == "none":
            raise UserError("videos need images: use --render-quality fast (or --videos 0)")
        wanted = agent.image_size()
        if wanted is not None and wanted != config.image_size:
            raise UserError(f"agent {config.agent!r} was trained on {wanted}x{wanted} images but the evaluation "
                            f"renders {config.image_size}x{config.image_size}: pass --image-size {wanted}")
        if out_dir is None and config.videos:
            raise UserError("videos need a run directory to go to")
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.store = None if out_dir is None else ResultsStore(results or self.out_dir / "results.jsonl")
        self.merged = ResultsStore(self.out_dir / "results.jsonl") if out_dir is not None and results else None
        self.video_dir = None if out_dir is None else self.out_dir / "videos"
        self.progress = progress
        self.step_budget = step_budget
        self.stats: EvalStats | None = None
        self.loop_seconds, self.video_seconds, self.max_envs, self.steps_done = 0.0, 0.0, 0, 0
        self._finished: list[dict[str, Any]] = []  # records this `run` appended

    # -- records ------------------------------------------------------------------------

    def _base(self, task: int) -> dict[str, Any]:
        c = self.config
        return {"agent": c.agent, "suite": self.suite, "task": task, "seed": c.seed, "protocol": self.protocol.name,
                "preset": c.preset, "horizon": self.horizon}

    def pending(self, task: int) -> list[int]:
        """Init-state indices of the task's episodes not yet in the results store (all of them when
        nothing is recorded)."""
        done = self.store.keys() if self.store is not None else set()
        if self.merged is not None:
            done |= self.merged.keys()
        base = self._base(task)
        return [k for k in range(self.episodes) if record_key({**base, "init_state": k}) not in done]

    def records(self) -> list[dict[str, Any]]:
        """This config's records in the store (including earlier runs'); this call's when nothing
        is recorded."""
        if self.store is None:
            return list(self._finished)
        wanted = {record_key({**self._base(t), "init_state": k}) for t in self.config.tasks for k in range(self.episodes)}
        return [r for r in self.store.records() if record_key(r) in wanted]

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every pending episode; return all of this config's records. `self.stats`
        then holds this call's throughput (None when nothing was pending)."""
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        todo = {t: self.pending(t) for t in self.config.tasks}
        total = sum(len(v) for v in todo.values())
        self.stats = None
        self.loop_seconds, self.video_seconds, self.max_envs, self._finished = 0.0, 0.0, 0, []
        self.steps_done = 0
        started = time.perf_counter()
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn()]
        with display.bars(self.progress and total > 0, columns) as bar:
            job = bar.add_task(f"eval {self.config.agent} seed {self.config.seed} on {self.suite}", total=total,
                               log=False)  # one line per task instead (below)

            recording = self.store is not None  # a measurement without a store stays off the run's display

            def advance() -> None:
                bar.advance(job)
                if recording:
                    display.episode_finished()

            for task, indices in todo.items():
                if not indices:
                    continue
                if recording:
                    display.status(task=f"{task} {self.specs[task].name}")
                task_started, before = time.perf_counter(), len(self._finished)
                self._run_task(task, indices, advance)
                if recording:
                    display.line(self._task_line(task, self._finished[before:], time.perf_counter() - task_started))
        if self._finished:
            self.stats = EvalStats(episodes=len(self._finished), env_steps=sum(r["steps"] for r in self._finished),
                                   seconds=round(self.loop_seconds - self.video_seconds, 3),
                                   wall_seconds=round(time.perf_counter() - started, 3), n_envs=self.max_envs)
        return self.records()

    def _task_line(self, task: int, records: list[dict[str, Any]], seconds: float) -> str:
        successes = sum(bool(r["success"]) for r in records)
        errors = sum(r.get("status") == "error" for r in records)
        return (f"  eval {self.config.agent} seed {self.config.seed} task {task} {self.specs[task].name}: "
                f"{successes}/{len(records)} successes" + (f", {errors} errors" if errors else "")
                + f", {sum(r['steps'] for r in records)} env steps in {seconds:.1f} s")

    def _n_envs(self, pending: int) -> int:
        wanted = self.config.n_envs or min(self.protocol.n_envs, os.cpu_count() or 1)
        return max(1, min(wanted, pending))

    def _run_task(self, task: int, indices: list[int], advance: Callable[[], None]) -> None:
        spec = self.specs[task]
        available = len(load_init_states(self.suite, task))
        if max(indices) >= available:
            raise UserError(f"episode k starts from init state k, and task {task} has {available}: "
                            f"use --episodes <= {available}")
        n = self._n_envs(len(indices))
        queue = deque(indices)
        crashes: dict[int, int] = {}
        while queue and not self._budget_spent():
            try:
                self._run_envs(task, spec, n, queue, advance)
            except _AgentFailed as failed:
                raise failed.__cause__ from None
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as exc:  # an env (worker) crashed: restart the envs, retry its episodes once
                self._after_crash(task, spec.name, queue, crashes, exc, advance)

    def _run_envs(self, task: int, spec, n: int, queue: deque, advance: Callable[[], None]) -> None:
        self._slots: list[_Running | None] = [None] * n
        venv = make_eval_vector_env(self.config, task, n, self.agent.env_wrapper())
        self.max_envs = max(self.max_envs, n)
        started = time.perf_counter()
        crashed = True  # until the loop ends normally: an exception or Ctrl-C terminates the workers
        try:
            self._agent(self.agent.reset, TaskInfo(self.suite, task, spec.name, spec.instruction))
            started = time.perf_counter()  # throughput counts stepping, not env start-up or agent reset
            slots = self._slots
            obs = self._start(venv, task, slots, queue, np.ones(n, dtype=bool), None)
            while any(s is not None and s.index >= 0 for s in slots) and not self._budget_spent():
                actions = np.asarray(self._agent(self.agent.act_vector, venv, obs), dtype=np.float64).reshape(n, ACTION_DIM)
                self._check_actions(actions, task, slots)
                self._record_frames(obs, slots)  # the observation acted on, with what the agent made of it
                step_obs, _, terminated, truncated, info = venv.step(actions)
                obs = {k: np.array(v, copy=True) for k, v in step_obs.items()}
                self.steps_done += n
                ended = np.zeros(n, dtype=bool)
                for i, run in enumerate(slots):
                    run.steps += 1
                    run.success = run.success or bool(info["is_success"][i])
                    if terminated[i] or truncated[i] or run.steps >= self.horizon:
                        ended[i] = True
                        if run.index >= 0:
                            self._record_frames(obs, slots, only=i)  # the episode's last observation
                            self._finish(task, spec.name, run)
                            advance()
                if ended.any():
                    obs = self._start(venv, task, slots, queue, ended, obs)
            crashed = False
        finally:
            self.loop_seconds += time.perf_counter() - started
            close_vector_env(venv, crashed=crashed)

    def _agent(self, method: Callable, *args: Any) -> Any:
        """Call the agent; what it raises is the agent's failure, not the environment's (`_AgentFailed`).
        A privileged agent acts through the env workers, so what it raises stays an env crash."""
        try:
            return method(*args)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if self.agent.privileged:
                raise
            raise _AgentFailed() from exc

    def _budget_spent(self) -> bool:
        return self.step_budget is not None and self.steps_done >= self.step_budget

    def _check_actions(self, actions: np.ndarray, task: int, slots) -> None:
        bad = ~np.isfinite(actions).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            run = slots[i]
            raise UserError(f"agent {self.config.agent!r} returned a non-finite action {actions[i].tolist()} at step "
                            f"{run.steps} of task {task}, init state {run.index} (seed {self.config.seed})")

    def _after_crash(self, task: int, task_name: str, queue: deque, crashes: dict[int, int], exc: Exception,
                     advance: Callable[[], None]) -> None:
        """Episodes in flight when an env crashed go back to the front of the queue once; a second
        crash records them as errors (not failures: tables leave them out and count them)."""
        import sys

        message = f"{type(exc).__name__}: {exc}".strip()[:500]
        in_flight = [run for run in self._slots if run is not None and run.index >= 0]
        print(f"atm-bench: warning: an environment crashed on task {task} ({message}); restarting it", file=sys.stderr)
        for run in reversed(in_flight):
            crashes[run.index] = crashes.get(run.index, 0) + 1
            if crashes[run.index] >= 2:
                run.frames = None
                self._finish(task, task_name, run, error=message)
                advance()
            else:
                queue.appendleft(run.index)

    def _start(self, venv, task: int, slots, queue: deque, mask: np.ndarray, obs):
        """Reset the workers in `mask`, each with the next pending episode (or a throw-away one)."""
        n = len(slots)
        next_states: list[int | None] = [None] * n
        seeds: list[int | None] = [None] * n
        now = time.perf_counter()
        for i in np.flatnonzero(mask):
            index = queue.popleft() if queue else -1
            seed = episode_seed(self.config.seed, task, index) if index >= 0 else 0
            frames = [] if 0 <= index < self.config.videos else None
            slots[i] = _Running(index=index, seed=seed, started=now, frames=frames)
            next_states[i] = max(index, 0)
            seeds[i] = seed
        venv.set_attr("next_init_state", next_states)
        reset_obs, _ = venv.reset(seed=seeds, options={"reset_mask": np.asarray(mask, dtype=bool)})
        if obs is None:
            obs = {k: np.array(v, copy=True) for k, v in reset_obs.items()}
        else:
            for k in obs:
                obs[k][mask] = reset_obs[k][mask]
        self.agent.on_episode_start(np.asarray(mask, dtype=bool))
        return obs

    def _record_frames(self, obs: dict[str, np.ndarray], slots, only: int | None = None) -> None:
        """Append env i's camera views (copies) and the agent's `video_overlay(i)` to each
        recorded episode (all, or env `only`); frames are composed when the video is written."""
        for i, run in enumerate(slots):
            if run is None or run.frames is None or (only is not None and i != only):
                continue
            views = tuple(np.array(obs[v][i], dtype=np.uint8, copy=True) for v in VIEWS)
            run.frames.append((views, self.agent.video_overlay(i)))

    def _finish(self, task: int, task_name: str, run: _Running, error: str | None = None) -> None:
        record = {
            **self._base(task),
            "task_name": task_name,
            "instruction": self.specs[task].instruction,
            "init_state": run.index,
            "episode_seed": run.seed,
            "success": bool(run.success),
            "steps": int(run.steps),
            "seconds": round(time.perf_counter() - run.started, 3),
            "render_quality": self.config.render_quality,
            "finished_at": utc_timestamp(),
        }
        if error is not None:
            record.update(status="error", error=error)
        if run.frames:
            name = video_name(self.suite, task, run.index, self.config.seed)
            encoding = time.perf_counter()
            write_mp4(self.video_dir / self.config.agent / name, compose_video(run.frames))
            self.video_seconds += time.perf_counter() - encoding
            run.frames = None
            record["video"] = str(Path("videos") / self.config.agent / name)
        if self.store is not None:
            self.store.append(record)
        self._finished.append(record)

    def snapshot(self) -> dict[str, Any]:
        """The config snapshot written next to the results."""
        return {
            "config": {**asdict(self.config), "suite": self.suite},
            "episodes_per_task": self.episodes,
            "horizon": self.horizon,
            "protocol": {"name": self.protocol.name, "settle_steps": self.protocol.settle_steps,
                         "description": self.protocol.description},
            "agent": self.agent.describe(),
        }


def evaluate(agent, config: EvalConfig, out_dir: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) an evaluation and write its config snapshot; return its records."""
    return run_evaluation(agent, config, out_dir, progress).run()


def run_evaluation(agent, config: EvalConfig, out_dir: str | Path, progress: bool = True,
                   results: str | Path | None = None) -> Evaluator:
    """The Evaluator of `config` with its config snapshot written; call `.run()` on it (after
    which `.stats` holds the throughput). `results`: as `Evaluator`'s."""
    evaluator = Evaluator(agent, config, out_dir, progress=progress, results=results)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    # Seed and a shard's task in the name: shards of one agent start in the same second on a cluster.
    shard = f"_task{config.tasks[0]}" if len(config.tasks) == 1 else ""
    name = f"eval_{config.agent}_seed{config.seed}{shard}_{stamp}.json"
    write_json_atomic(Path(out_dir) / "configs" / name, evaluator.snapshot())
    return evaluator


def serial_throughput(agent, config: EvalConfig, steps: int = 100) -> dict[str, Any]:
    """The baseline for the vector loop's throughput: the evaluation loop itself with one env in
    this process (act -> step, the same agent), on the config's first task, for `steps` env steps;
    an episode that ends (success, time-out or the horizon) is followed by the next init state.
    Returns env steps/s over the stepping (env start-up excluded, as in `EvalStats`). Nothing is
    recorded."""
    task = config.tasks[0]
    states = len(load_init_states(get_suite(config.suite).name, task))
    serial = dataclasses.replace(config, tasks=(task,), n_envs=1, asynchronous=False, videos=0, episodes=states)
    evaluator = Evaluator(agent, serial, None, progress=False, step_budget=steps)
    evaluator.run()
    seconds = evaluator.loop_seconds
    return {"task": task, "env_steps": evaluator.steps_done, "episodes": len(evaluator.records()) + 1,
            "seconds": round(seconds, 3),
            "steps_per_second": round(evaluator.steps_done / seconds, 3) if seconds > 0 else 0.0}
