"""Demo generation: scripted-expert rollouts in the real LIBERO simulator, saved in LIBERO's layout.

Cheap by construction: each attempt is rolled out physics-only (no cameras), recording the
flattened MuJoCo state before every action; only successful attempts are then rendered, by
replaying their states through a second env with cameras (`set_state` + `observation()`).

Init states. `sampled` (default): every attempt draws a fresh object placement from the task's
own BDDL placement regions (LIBERO's placement sampler, seeded), the way LIBERO's human demos were
recorded; the 50 fixed init states stay unseen, for evaluation only. `fixed`: attempt a starts
from fixed init state a mod 50 (these are the states evaluation uses).

Resumable, never corrupt: each successful demo is written at once, atomically, as a one-demo
part file in `<task file>.parts/`, next to a progress log of every attempt (successes and
failures). When the task has its demos, the parts are merged into `<task>_demo.hdf5` by an
atomic rename and the parts directory is removed. A rerun skips finished tasks and continues
an unfinished one at its next attempt; everything is a function of (seed, task, attempt), so
an interrupted and an uninterrupted generation write the same demos.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from atm_bench.blas import active_openblas_core, cpu_model, warn_if_unpinned
from atm_bench.data.episodes import (COMPRESSION, Episode, EpisodeFile, FileHeader, merge_task_files,
                                     observations_to_obs, write_task_file)
from atm_bench.envs.libero.env import LiberoEnv
from atm_bench.envs.libero.rendering import gl_info
from atm_bench.envs.libero.runtime import libero
from atm_bench.envs.libero.suites import canonical_suite, get_task
from atm_bench.errors import UserError
from atm_bench.experts import rollout
from atm_bench.experts.motion import APPROACH, check_approach
from atm_bench.io import write_json_atomic
from atm_bench.progress import bars
from atm_bench.tracking.annotate import AnnotateConfig, annotate_replay, demo_rng
from atm_bench.tracking.sampling import SamplingConfig
from atm_bench.tracking.sim import SimReplay
from atm_bench.tracking.storage import write_demo_tracks

INIT_STATE_SOURCES = ("sampled", "fixed")


@dataclass(frozen=True)
class GenerateConfig:
    suite: str
    tasks: tuple[int, ...]
    demos: int = 50
    seed: int = 0
    image_size: int = 128
    render_quality: str = "fast"
    init_states: str = "sampled"
    max_attempts: int | None = None  # per task; None = 3 x demos
    max_steps: int | None = None  # per attempt; None = the ATM protocol's horizon (600)
    compression: str | None = COMPRESSION
    # "sim": annotate exact point tracks while rendering, from the depth rendered with the frames
    # (far cheaper than `atm-bench tracks annotate` later, which must render depth again).
    tracks: str | None = None
    track_points: int = 1000
    # DART-style pushes while the expert acts (chance per step; labels stay the expert's): see
    # `experts.expert.Perturbation`. 0 = the expert's own demos.
    perturb: float = 0.0
    # the expert servo's slow-down distance (m); None = `experts.motion.APPROACH`
    approach: float | None = None

    @property
    def attempts_bound(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 3 * self.demos

    def identity(self) -> dict[str, Any]:
        """What must match for a resumed generation to continue an earlier one."""
        return {"seed": self.seed, "image_size": self.image_size, "render_quality": self.render_quality,
                "init_states": self.init_states, "expert": "scripted",
                **({"perturb": self.perturb} if self.perturb else {}),
                **({"approach": self.approach} if self.approach is not None else {})}


@dataclass
class TaskReport:
    task: int
    name: str
    path: Path
    demos: int
    attempts: int
    new_demos: int = 0
    seconds: float = 0.0
    skipped: bool = False
    steps: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"setup": 0.0, "rollout": 0.0, "render": 0.0, "tracks": 0.0,
                                                                "write": 0.0})
    renderer: dict[str, str] | None = None  # `rendering.gl_info()` of the process that rendered (None: nothing rendered)


def task_path(data_dir: str | Path, suite: str, task: int) -> Path:
    spec = get_task(suite, task)
    return Path(data_dir) / spec.suite / f"{spec.name}_demo.hdf5"


def attempt_seed(seed: int, task: int, attempt: int) -> int:
    """Seed of one attempt (expert style and, for `sampled`, the object placement)."""
    return int(np.random.SeedSequence([seed, task, attempt, 7]).generate_state(1)[0])


def seed_env(env, seed: int) -> None:
    """Seed the env's generator: its next reset then draws the fixture placement from `seed`.

    LIBERO places fixtures (cabinet, stove, ...) at reset, in the model rather than in the
    flattened state, from the env's seeded generator. The physics rollout and the render replay
    seed their envs alike so that both see the same fixture placement.
    """
    from gymnasium.utils import seeding

    env.np_random, _ = seeding.np_random(int(seed))


def sample_init_state(env, seed: int) -> np.ndarray:
    """A fresh init state from the task's placement regions: LIBERO's own reset, seeded.

    Uses the env's reset of LIBERO's task env (fixtures and objects drawn from the seeded
    generator); the rollout's own reset, seeded the same way, then places the fixtures
    identically, so the sampled objects sit where they were sampled relative to them.
    """
    seed_env(env, seed)
    env.reset_scene()
    return env.get_state().copy()


def file_header(suite: str, task: int, config: GenerateConfig) -> FileHeader:
    libero()
    from libero.libero.envs.bddl_utils import get_problem_info

    spec = get_task(suite, task)
    info = get_problem_info(spec.bddl_path)
    env_args = {
        "type": 1,
        "env_name": info["problem_name"],
        "problem_name": info["problem_name"],
        "bddl_file": f"{spec.problem_folder}/{spec.bddl_file}",
        "env_kwargs": {"robots": ["Panda"], "controller": "OSC_POSE", "control_freq": 20,
                       "camera_names": ["agentview", "robot0_eye_in_hand"],
                       "camera_heights": config.image_size, "camera_widths": config.image_size},
        "atm_bench": {**config.identity(), "suite": spec.suite, "task": spec.index},
    }
    return FileHeader(problem_info=dict(info), env_args=env_args, bddl_file_name=f"{spec.problem_folder}/{spec.bddl_file}")


class TaskGenerator:
    """Generates (or resumes) the demos of one task."""

    def __init__(self, config: GenerateConfig, data_dir: str | Path, task: int) -> None:
        self.config = config
        self.suite = canonical_suite(config.suite)
        self.spec = get_task(self.suite, task)
        self.path = task_path(data_dir, self.suite, task)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.log_path = self.parts / "progress.json"
        self._physics = None
        self._render = None
        self.timings: dict[str, float] = {"setup": 0.0}

    # -- state on disk ---------------------------------------------------------------------

    def _final_demos(self) -> list[dict[str, Any]]:
        """Attributes of the demos already in the final file (checked against this config)."""
        if not self.path.exists():
            return []
        with EpisodeFile(self.path) as f:
            f.check()
            made = f.header.env_args.get("atm_bench", {})
            self._check_identity(made, self.path)
            return [f.attrs(n) for n in f.demo_names]

    def _check_identity(self, made: dict[str, Any], where: Path) -> None:
        wanted = self.config.identity()
        if {k: made.get(k) for k in wanted} != wanted:
            raise UserError(
                f"{where}: made with {({k: made.get(k) for k in wanted})}, not {wanted}; use another --data-dir "
                "or delete it to regenerate"
            )

    def _load_log(self) -> dict[str, Any]:
        if not self.log_path.exists():
            return {"identity": self.config.identity(), "attempts": []}
        log = json.loads(self.log_path.read_text())
        self._check_identity(log.get("identity", {}), self.log_path)
        # keep only successes whose part file made it to disk
        log["attempts"] = [a for a in log["attempts"] if not a["success"] or (self.parts / a["part"]).is_file()]
        return log

    # -- simulator ----------------------------------------------------------------------------

    def _envs(self):
        if self._physics is None:
            start = time.perf_counter()
            size = self.config.image_size
            self._physics = LiberoEnv(self.suite, self.spec.index, image_size=size, render_quality="none")
            self._render = LiberoEnv(self.suite, self.spec.index, image_size=size,
                                     render_quality=self.config.render_quality,
                                     camera_depths=self.config.tracks == "sim")
            self.timings["setup"] += time.perf_counter() - start
        return self._physics, self._render

    def close(self) -> None:
        for env in (self._physics, self._render):
            if env is not None:
                env.close()
        self._physics = self._render = None

    def _attempt(self, attempt: int) -> tuple[bool, np.ndarray, np.ndarray, dict[str, Any]]:
        physics, _ = self._envs()
        seed = attempt_seed(self.config.seed, self.spec.index, attempt)
        if self.config.init_states == "sampled":
            state = sample_init_state(physics, seed)
            physics.init_states = state[None]  # the rollout starts from "init state 0" = this one
            index = 0
            attrs = {"init_state_index": -1}
        else:  # LIBERO's 50 fixed states, in order
            index = attempt % len(physics.init_states)
            state = np.asarray(physics.init_states[index])
            attrs = {"init_state_index": index}
        max_steps = self.config.max_steps or physics.horizon
        seed_env(physics, seed)
        approach = APPROACH if self.config.approach is None else self.config.approach
        success, actions, states = rollout(physics, index, seed, max_steps, perturb=self.config.perturb, approach=approach)
        attrs.update(init_state=np.asarray(state), seed=seed, attempt=attempt, init_state_source=self.config.init_states,
                     perturb=self.config.perturb, approach=approach,
                     # fixture placement (in the model, not the state): replays (tracks) need it
                     body_pos=np.array(physics.sim.model.body_pos), body_quat=np.array(physics.sim.model.body_quat))
        return success, actions, states, attrs

    def _render_episode(self, actions: np.ndarray, states: np.ndarray,
                        attrs: dict[str, Any]) -> tuple[Episode, list[dict[str, np.ndarray]]]:
        """The demo's episode, rendered by replaying its states, and the env observations it came from."""
        physics, render = self._envs()
        seed_env(render, attrs["seed"])  # the same fixture placement as the rollout's
        render.reset(options={"init_state": 0})
        for field_name in ("body_pos", "body_quat"):
            if not np.array_equal(getattr(render.sim.model, field_name), getattr(physics.sim.model, field_name)):
                raise RuntimeError(f"render env's {field_name} differs from the rollout's: frames would not match states")
        observations = []
        for state in states:
            render.set_state(state)
            observations.append(render.observation())
        dones = np.zeros(len(actions), dtype=np.uint8)
        dones[-1] = 1
        return Episode(actions=actions, states=states, obs=observations_to_obs(observations),
                       rewards=dones.copy(), dones=dones, attrs=attrs), observations

    def _tracks(self, observations: list[dict[str, np.ndarray]], states: np.ndarray, attrs: dict[str, Any]):
        """Exact tracks of one demo, from the depth rendered with its frames (no second render)."""
        _, render = self._envs()
        views = ("agentview", "eye_in_hand")
        depths = {v: np.stack([o[f"{v}_depth"] for o in observations]) for v in views}
        replay = SimReplay(render.renderer, render.sim.model._model, states, views=views, depths=depths,
                           body_poses=(attrs["body_pos"], attrs["body_quat"]))
        config = AnnotateConfig(tracker="sim", sampling=SamplingConfig(num_points=self.config.track_points),
                                seed=self.config.seed)
        rng = demo_rng(self.config.seed, self.path.name, f"attempt_{attrs['attempt']}")
        return annotate_replay(replay, config.sampling, rng), config.attrs()

    # -- the loop ------------------------------------------------------------------------------

    def run(self, on_attempt: Callable[[int, int, bool], None] | None = None) -> TaskReport:
        """Generate until `demos` successes or the attempts bound; merge into the task file."""
        start = time.perf_counter()
        final = self._final_demos()
        report = TaskReport(self.spec.index, self.spec.name, self.path, demos=len(final), attempts=0)
        if len(final) >= self.config.demos and not self.parts.exists():
            report.skipped = True
            return report
        log = self._load_log()
        attempts = log["attempts"]
        done = len(final) + sum(a["success"] for a in attempts)
        attempt = 1 + max([int(d.get("attempt", -1)) for d in final] + [a["attempt"] for a in attempts] + [-1])
        header = file_header(self.suite, self.spec.index, self.config)
        try:
            self.timings = report.timings
            clock = time.perf_counter()
            while done < self.config.demos and attempt < self.config.attempts_bound:
                setup = report.timings["setup"]
                success, actions, states, attrs = self._attempt(attempt)
                report.timings["rollout"] -= report.timings["setup"] - setup  # env creation is not rollout
                clock = _lap(report.timings, "rollout", clock)
                entry = {"attempt": attempt, "success": bool(success), "steps": int(len(actions))}
                if success:
                    part = f"part_{attempt:05d}.hdf5"
                    episode, observations = self._render_episode(actions, states, attrs)
                    clock = _lap(report.timings, "render", clock)
                    tracks = self._tracks(observations, states, attrs) if self.config.tracks == "sim" else None
                    clock = _lap(report.timings, "tracks", clock)
                    write_task_file(self.parts / part, header, [episode], self.config.compression)
                    if tracks is not None:
                        write_demo_tracks(self.parts / part, "demo_0", *tracks)
                    clock = _lap(report.timings, "write", clock)
                    entry["part"] = part
                    done += 1
                    report.new_demos += 1
                    report.steps.append(len(actions))
                attempts.append(entry)
                write_json_atomic(self.log_path, log)
                attempt += 1
                report.attempts += 1
                if on_attempt:
                    on_attempt(done, attempt, bool(success))
        finally:
            self.close()
        # the old file's demos first, then the new ones in attempt order; merging writes a temp
        # file and renames it over the old one
        sources = [(self.path, f"demo_{i}") for i in range(len(final))]
        sources += [(self.parts / a["part"], "demo_0") for a in attempts if a["success"]]
        if len(sources) > len(final):
            merge_task_files(self.path, header, sources)
        if self.parts.exists():
            shutil.rmtree(self.parts)
        report.demos = len(sources)
        report.seconds = time.perf_counter() - start
        return report


def _lap(timings: dict[str, float], key: str, since: float) -> float:
    now = time.perf_counter()
    timings[key] += now - since
    return now


def _run_task(config: GenerateConfig, data_dir: Path, task: int, queue=None) -> TaskReport:
    """One task's generation; progress goes to `queue` as (task, done, attempts) when given."""
    generator = TaskGenerator(config, data_dir, task)

    def update(done: int, attempts: int, _ok: bool) -> None:
        if queue is not None:
            queue.put((task, done, attempts))

    report = generator.run(update)
    report.renderer = gl_info()
    return report


def generate(config: GenerateConfig, data_dir: str | Path, progress: bool = True, workers: int = 1) -> list[TaskReport]:
    """Generate demos for every task of `config`; a rerun resumes. Prints nothing itself.

    `workers` > 1 runs that many tasks at once, each in its own (spawned) process with its own
    simulators: on a machine with idle cores, throughput scales about with the worker count.
    """
    import multiprocessing as mp
    import queue as queue_module
    from concurrent.futures import ProcessPoolExecutor

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    if config.init_states not in INIT_STATE_SOURCES:
        raise UserError(f"unknown init-state source {config.init_states!r}; valid: {', '.join(INIT_STATE_SOURCES)}")
    if config.demos < 1:
        raise UserError(f"--demos must be >= 1, got {config.demos}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if config.approach is not None:
        try:
            check_approach(config.approach)
        except ValueError as exc:
            raise UserError(f"--approach: {exc}") from None
    data_dir = Path(data_dir)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn()]
    with bars(progress, columns) as bar:
        jobs = {t: bar.add_task(f"task {t} {get_task(config.suite, t).name[:40]}", total=config.demos, note="")
                for t in config.tasks}

        def show(task: int, done: int, attempts: int) -> None:
            bar.update(jobs[task], completed=done, note=f"{attempts} attempts")

        if workers == 1:
            warn_if_unpinned("these demos")
            reports = []
            for task in config.tasks:
                reports.append(_run_task(config, data_dir, task, _Direct(show)))
        else:
            context = mp.get_context("spawn")  # simulators and GL contexts never cross a fork
            with context.Manager() as manager, ProcessPoolExecutor(min(workers, len(config.tasks)), context) as pool:
                queue = manager.Queue()
                futures = [pool.submit(_run_task, config, data_dir, task, queue) for task in config.tasks]
                while not all(f.done() for f in futures):
                    try:
                        show(*queue.get(timeout=0.5))
                    except queue_module.Empty:
                        pass
                reports = [f.result() for f in futures]
        for r in reports:
            bar.update(jobs[r.task], completed=r.demos, note="already done" if r.skipped else "done")
    write_json_atomic(data_dir / canonical_suite(config.suite) / "generation.json",
                      {"config": asdict(config), "workers": workers,
                       "machine": {"cpu": cpu_model(), "openblas_core": active_openblas_core()},
                       "tasks": [_report_dict(r) for r in reports]})
    return reports


class _Direct:
    """A queue stand-in that shows progress at once (single-process generation)."""

    def __init__(self, show: Callable[[int, int, int], None]) -> None:
        self.show = show

    def put(self, item: tuple[int, int, int]) -> None:
        self.show(*item)


def _report_dict(report: TaskReport) -> dict[str, Any]:
    d = asdict(report)
    d["path"] = str(report.path)
    return d
