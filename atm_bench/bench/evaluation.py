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
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from atm_bench.bench.results import ResultsStore, record_key
from atm_bench.errors import UserError


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
    extra: dict[str, Any] = field(default_factory=dict)


def episode_seed(seed: int, task: int, init_state: int) -> int:
    """The env/agent seed of one episode: a function of (run seed, task, init state) only."""
    return int(np.random.SeedSequence([seed, task, init_state]).generate_state(1)[0])


@dataclass
class _Running:
    """The episode a worker is running now."""

    index: int  # = init state index; -1 for a throw-away episode on an idle worker
    seed: int
    started: float
    steps: int = 0
    success: bool = False
    frames: list[np.ndarray] | None = None


def make_eval_vector_env(config: EvalConfig, task: int, n_envs: int, wrapper: Callable | None = None):
    """The task's vector env (autoreset disabled); `wrapper` wraps each worker's env."""
    from atm_bench.envs.libero.vector import make_vector_env

    return make_vector_env(config.suite, task, n_envs, asynchronous=config.asynchronous, wrapper=wrapper,
                           image_size=config.image_size, render_quality=config.render_quality,
                           protocol=config.protocol)


class Evaluator:
    """Runs one agent under one `EvalConfig`, writing records to `out_dir/results.jsonl`."""

    def __init__(self, agent, config: EvalConfig, out_dir: str | Path, progress: bool = True) -> None:
        from atm_bench.envs.libero.protocols import get_protocol
        from atm_bench.envs.libero.suites import canonical_suite, list_tasks

        self.agent = agent
        self.config = config
        self.suite = canonical_suite(config.suite)
        self.protocol = get_protocol(config.protocol)
        self.specs = list_tasks(self.suite)
        for t in config.tasks:
            if not 0 <= t < len(self.specs):
                raise UserError(f"unknown task index {t} for {config.suite}; valid: 0..{len(self.specs) - 1}")
        self.episodes = config.episodes or self.protocol.episodes_per_task
        self.horizon = min(config.horizon or 10**9, self.protocol.horizon(self.suite))
        if self.episodes < 1:
            raise UserError(f"--episodes must be >= 1, got {self.episodes}")
        if config.videos and config.render_quality == "none":
            raise UserError("videos need images: use --render-quality fast (or --videos 0)")
        self.out_dir = Path(out_dir)
        self.store = ResultsStore(self.out_dir / "results.jsonl")
        self.video_dir = self.out_dir / "videos"
        self.progress = progress

    # -- records ------------------------------------------------------------------------

    def _base(self, task: int) -> dict[str, Any]:
        c = self.config
        return {"agent": c.agent, "suite": self.suite, "task": task, "seed": c.seed, "protocol": self.protocol.name,
                "preset": c.preset, "horizon": self.horizon}

    def pending(self, task: int) -> list[int]:
        """Init-state indices of the task's episodes not yet in the results store."""
        done = self.store.keys()
        base = self._base(task)
        return [k for k in range(self.episodes) if record_key({**base, "init_state": k}) not in done]

    def records(self) -> list[dict[str, Any]]:
        """This config's records in the store (including earlier runs')."""
        wanted = {record_key({**self._base(t), "init_state": k}) for t in self.config.tasks for k in range(self.episodes)}
        return [r for r in self.store.records() if record_key(r) in wanted]

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every pending episode; return all of this config's records."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.out_dir.mkdir(parents=True, exist_ok=True)
        todo = {t: self.pending(t) for t in self.config.tasks}
        total = sum(len(v) for v in todo.values())
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, disable=not self.progress or total == 0) as bar:
            job = bar.add_task(f"eval {self.config.agent} on {self.suite}", total=total)
            for task, indices in todo.items():
                if indices:
                    self._run_task(task, indices, lambda: bar.advance(job))
        return self.records()

    def _n_envs(self, pending: int) -> int:
        wanted = self.config.n_envs or min(self.protocol.n_envs, os.cpu_count() or 1)
        return max(1, min(wanted, pending))

    def _run_task(self, task: int, indices: list[int], advance: Callable[[], None]) -> None:
        from atm_bench.envs.libero.suites import load_init_states

        spec = self.specs[task]
        available = len(load_init_states(self.suite, task))
        if max(indices) >= available:
            raise UserError(f"episode k starts from init state k, and task {task} has {available}: "
                            f"use --episodes <= {available}")
        n = self._n_envs(len(indices))
        queue = deque(indices)
        crashes: dict[int, int] = {}
        while queue:
            try:
                self._run_envs(task, spec, n, queue, advance)
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as exc:  # an env (worker) crashed: restart the envs, retry its episodes once
                self._after_crash(task, spec.name, queue, crashes, exc, advance)

    def _run_envs(self, task: int, spec, n: int, queue: deque, advance: Callable[[], None]) -> None:
        from atm_bench.agents.base import TaskInfo

        self._slots: list[_Running | None] = [None] * n
        venv = make_eval_vector_env(self.config, task, n, self.agent.env_wrapper())
        try:
            self.agent.reset(TaskInfo(self.suite, task, spec.name, spec.instruction))
            slots = self._slots
            obs = self._start(venv, task, slots, queue, np.ones(n, dtype=bool), None)
            while any(s is not None and s.index >= 0 for s in slots):
                actions = np.asarray(self.agent.act_vector(venv, obs), dtype=np.float64).reshape(n, 7)
                self._check_actions(actions, task, slots)
                step_obs, _, terminated, truncated, info = venv.step(actions)
                obs = {k: np.array(v, copy=True) for k, v in step_obs.items()}
                ended = np.zeros(n, dtype=bool)
                for i, run in enumerate(slots):
                    run.steps += 1
                    run.success = run.success or bool(info["is_success"][i])
                    if run.frames is not None:
                        run.frames.append(_frame(obs, i))
                    if terminated[i] or truncated[i] or run.steps >= self.horizon:
                        ended[i] = True
                        if run.index >= 0:
                            self._finish(task, spec.name, run)
                            advance()
                if ended.any():
                    obs = self._start(venv, task, slots, queue, ended, obs)
        finally:
            try:
                venv.close()
            except Exception:  # a crashed worker may not close cleanly; it is gone either way
                pass

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
        for i in np.flatnonzero(mask):
            if slots[i].frames is not None:
                slots[i].frames.append(_frame(obs, i))
        self.agent.on_episode_start(np.asarray(mask, dtype=bool))
        return obs

    def _finish(self, task: int, task_name: str, run: _Running, error: str | None = None) -> None:
        from atm_bench.bench.video import video_name, write_mp4

        record = {
            **self._base(task),
            "task_name": task_name,
            "init_state": run.index,
            "episode_seed": run.seed,
            "success": bool(run.success),
            "steps": int(run.steps),
            "seconds": round(time.perf_counter() - run.started, 3),
            "render_quality": self.config.render_quality,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if error is not None:
            record.update(status="error", error=error)
        if run.frames:
            name = video_name(self.suite, task, run.index, self.config.seed)
            write_mp4(self.video_dir / self.config.agent / name, run.frames)
            record["video"] = str(Path("videos") / self.config.agent / name)
        self.store.append(record)

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


def _frame(obs: dict[str, np.ndarray], i: int) -> np.ndarray:
    from atm_bench.bench.video import VIEWS

    return np.concatenate([obs[v][i] for v in VIEWS], axis=1)


def evaluate(agent, config: EvalConfig, out_dir: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) an evaluation and write its config snapshot; return its records."""
    from atm_bench.io import write_json_atomic

    evaluator = Evaluator(agent, config, out_dir, progress=progress)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    write_json_atomic(Path(out_dir) / "configs" / f"eval_{config.agent}_{stamp}.json", evaluator.snapshot())
    return evaluator.run()
