"""`atm-bench run --executor ray`: the run's grid on a Ray cluster (`pip install 'atm-bench[cluster]'`).

The runner settles the shared stages in this process (data, tracks, split; `Runner.prepare`),
then this driver schedules the rest as Ray tasks on a run directory every node sees: the stage-1
model, each (agent, seed) training, each evaluation shard (one task's episodes of one agent and
seed), and once per agent the FLOPs count and serial-loop throughput. Resource requests: a GPU
per training of an agent that runs on CUDA in a CUDA run (else one CPU), per shard one CPU per env
worker (and a quarter GPU for the policy of an agent on CUDA).

Only the driver writes the run's bookkeeping (`stages.json`, `timing.json`, `flops.json`,
`throughput.json`, `results.jsonl`); a task returns what it made. Each shard appends its
episodes to its own file (`shards/<agent>/seed<s>/task<t>.jsonl`), which the driver merges into
`results.jsonl` when the shard ends (`ResultsStore.absorb`: an episode already there is not added
again, then the shard file goes). So the local executor's resume guarantee holds: a worker
killed mid-shard is retried by Ray (or by the next `run`) and skips the episodes its file holds;
a driver killed between merging and deleting merges again on the next run without counting an
episode twice. Records are the local executor's: episode seeds depend only on (seed, task,
init state) (`bench/evaluation.py`).

The driver also decides what starts when (`admit`): a task is handed to Ray only once its CPUs and
GPUs fit what the cluster has free by the driver's count, trainings before measurements before
evaluation shards (the stage-1 model runs first, alone), and a smaller task passes a larger one
that does not fit. Handed everything at once, Ray granted in its own queue order: on a 2-core node
two-CPU shards queued ahead of one-CPU trainings left a core idle while trainings waited. A task
larger than the whole cluster is handed over when nothing else runs (Ray then waits for, or scales
to, the resources); on an autoscaling cluster the demand Ray sees is therefore only what fits or runs.

A worker rebuilds the runner from the `RunConfig` (paths made absolute) and the driver's `Plan`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import ray

from atm_bench.bench.evaluation import serial_throughput
from atm_bench.bench.runner import Plan, Runner
from atm_bench.bench.stages import Stage
from atm_bench.bench.timing import FLUSH_SECONDS, StageTimes
from atm_bench.devices import is_cuda
from atm_bench.errors import UserError

RETRIES = 2  # Ray reruns a task whose worker died this many times
TRAIN, MEASURE, SHARD = 0, 1, 2  # start order among tasks that fit: the critical path (trainings) first
EVAL_GPU_SHARE = 0.25  # an evaluation shard's policy takes little of a GPU: four shards share one
FORWARDED_ENV = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "MUJOCO_EGL_DEVICE_ID", "OMP_WAIT_POLICY", "HF_HOME",
                 "ATM_BENCH_CACHE", "TRANSFORMERS_OFFLINE", "HF_HUB_OFFLINE")


# -- what a worker runs -----------------------------------------------------------------------


def _worker_runner(config, plan: Plan) -> Runner:
    runner = Runner(config, progress=False)
    runner.rendering = plan.rendering
    return runner


def _agent(runner: Runner, plan: Plan, name: str, seed: int, trained: bool = True):
    agent = runner.build_agent(name, seed, plan.track_model_dir)
    if trained and not agent.privileged:
        agent.load(runner.train_stage(name, seed, agent, plan.manifest, plan.track_key).checkpoint)
    return agent


def stage_job(stage: Stage) -> dict[str, Any]:
    return stage.run()


def train_job(config, plan: Plan, name: str, seed: int) -> dict[str, Any]:
    runner = _worker_runner(config, plan)
    agent = _agent(runner, plan, name, seed, trained=False)
    return runner.train_stage(name, seed, agent, plan.manifest, plan.track_key).run()


def measure_job(config, plan: Plan, name: str, seed: int, flops: bool, serial: bool) -> dict[str, Any]:
    runner = _worker_runner(config, plan)
    agent = _agent(runner, plan, name, seed)
    measured: dict[str, Any] = {}
    if flops:
        measured["flops"] = runner.count_flops(agent)
    if serial:
        measured["serial"] = serial_throughput(agent, runner.eval_config(name, seed), steps=runner.serial_steps())
    return measured


def eval_job(config, plan: Plan, name: str, seed: int, task: int) -> dict[str, Any] | None:
    runner = _worker_runner(config, plan)
    return runner.evaluate_shard(_agent(runner, plan, name, seed), name, seed, task)


# -- the driver -----------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Clock:
    """A `timing.json` entry that runs while any of its jobs runs on Ray: a training's own, or one an
    agent-seed's evaluation shards share (the time any of them ran, not the sum). The wait in the
    driver's queue is left out. The driver writes it every `FLUSH_SECONDS` and when a job ends, as
    the local executor's `timed` does: a driver killed mid-stage loses at most that much of it."""

    name: str
    running: int = 0  # its jobs now running
    since: float = 0.0  # perf_counter from which the running time is not yet written
    seconds: float = 0.0  # the time written by this driver

    def start(self, now: float) -> None:
        if not self.running:
            self.since = now
        self.running += 1

    def count(self, timing: StageTimes, now: float) -> None:
        if self.running:
            timing.add(self.name, now - self.since)
            self.seconds += now - self.since
            self.since = now


@dataclasses.dataclass
class Job:
    """A task the driver holds until it fits: what to run, what it asks for, what follows it."""

    rank: int  # TRAIN, MEASURE or SHARD
    order: int  # submission order, within a rank
    fn: Callable
    args: tuple
    resources: dict[str, Any]
    then: Callable[[Any], None]
    clock: Clock | None = None  # what its running time counts into, if anything

    def needs(self) -> tuple[float, float]:
        """(CPUs, GPUs) it holds while it runs; a Ray task asks one CPU unless it says otherwise."""
        return float(self.resources.get("num_cpus", 1)), float(self.resources.get("num_gpus", 0))


def admit(queue: list[Job], free: tuple[float, float], idle: bool) -> list[Job]:
    """The queued jobs to start now, best rank first: each that fits in the `free` (CPUs, GPUs) left
    by those before it. When the cluster is `idle` and none fits, the first starts anyway, so a job
    larger than the cluster is still run (Ray holds it until resources appear)."""
    cpus, gpus = free
    started = []
    for job in sorted(queue, key=lambda j: (j.rank, j.order)):
        need_cpus, need_gpus = job.needs()
        if need_cpus <= cpus + 1e-9 and need_gpus <= gpus + 1e-9:
            started.append(job)
            cpus, gpus = cpus - need_cpus, gpus - need_gpus
    if not started and idle and queue:
        started.append(min(queue, key=lambda j: (j.rank, j.order)))
    return started


class RayGrid:
    """Runs a plan's stage-1 model and per-agent work as Ray tasks (`Runner.run(grid=...)`).
    `address`: a running cluster's (`auto`: the one this node belongs to); None starts Ray on
    this machine for the run."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.jobs: dict[Any, Job] = {}  # object ref of a started task -> its job
        self.queue: list[Job] = []  # jobs not yet handed to Ray (`admit`)
        self.submitted = 0
        self.functions: dict[Callable, Any] = {}  # job function -> its Ray remote function
        self.measuring: set[str] = set()  # agents whose FLOPs and serial loop are measured (once per agent)

    def run(self, runner: Runner, plan: Plan) -> None:
        self.runner, self.plan = runner, plan
        # Workers may start elsewhere: every path they get is absolute.
        self.config = dataclasses.replace(runner.config, out=runner.out.resolve(), data_dir=runner.data_dir.resolve())
        started = self._connect()
        try:
            resources = ray.cluster_resources()
            self.cpus = max(1, int(resources.get("CPU", 1)))
            runner.display.line(f"[ray] {int(resources.get('CPU', 0))} CPUs, {int(resources.get('GPU', 0))} GPUs "
                                f"on {len(ray.nodes())} node(s)")
            if runner.needs_track_model(plan):
                self._stage_one()
            for name, seed in plan.pending:
                self._start(name, seed)
            self._drain()
        finally:
            for ref in self.jobs:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()

    def _connect(self) -> bool:
        """Join or start Ray; True when this call started it (and so shuts it down)."""
        if ray.is_initialized():
            return False
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        # "local", not None: None would join a cluster a `ray start` on this machine left running (or
        # RAY_ADDRESS names), running the grid on that cluster's workers, code and CPU count.
        ray.init(address=self.address or "local", include_dashboard=False, log_to_driver=True,
                 runtime_env={"env_vars": env} if env else None)
        return True

    # -- scheduling --------------------------------------------------------------------------

    def _train_resources(self, device: str) -> dict[str, Any]:
        return {"num_gpus": 1} if is_cuda(device) else {"num_cpus": 1}

    def _submit(self, rank: int, fn: Callable, args: tuple, resources: dict[str, Any],
                then: Callable[[Any], None], clock: Clock | None = None) -> Job:
        job = Job(rank, self.submitted, fn, args, resources, then, clock)
        self.queue.append(job)
        self.submitted += 1
        return job

    def _dispatch(self) -> None:
        """Hand Ray the queued jobs that fit in what the started ones leave free."""
        total = ray.cluster_resources()
        used = [job.needs() for job in self.jobs.values()]
        free = (total.get("CPU", 0) - sum(c for c, _ in used), total.get("GPU", 0) - sum(g for _, g in used))
        for job in admit(self.queue, free, idle=not self.jobs):
            self.queue.remove(job)
            if job.clock is not None:
                job.clock.start(time.perf_counter())
            self.jobs[self._remote(job.fn, job.resources, *job.args)] = job

    def _remote(self, fn: Callable, resources: dict[str, Any], *args: Any):
        if fn not in self.functions:
            self.functions[fn] = ray.remote(fn)
        return self.functions[fn].options(max_retries=RETRIES, **resources).remote(*args)

    def _drain(self) -> None:
        """Start what fits, wait for a task (writing the running clocks at least every
        `FLUSH_SECONDS`), continue its (agent, seed) from its result; until none is left."""
        while self.jobs or self.queue:
            self._dispatch()
            ready, _ = ray.wait(list(self.jobs), num_returns=1, timeout=FLUSH_SECONDS)
            now = time.perf_counter()
            for clock in {job.clock for job in self.jobs.values() if job.clock is not None}:
                clock.count(self.runner.timing, now)
            if ready:
                job = self.jobs.pop(ready[0])
                if job.clock is not None:
                    job.clock.running -= 1  # counted to its end just above
                job.then(self._result(ready[0]))

    @staticmethod
    def _result(ref) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, UserError):  # one clear line, as from the local executor
                raise exc.cause from None
            raise

    def _stage_one(self) -> None:
        """The stage-1 model first: a plain blocking task (every track-using agent waits for it)."""
        runner = self.runner
        stage = runner.track_model_stage(self.plan.manifest)
        if not runner.needs(stage):
            return
        with runner.timed(stage.timing):
            extra = self._result(self._remote(stage_job, self._train_resources(runner.config.device), stage))
        runner.mark(stage.name, stage.key(), **extra)

    def _start(self, name: str, seed: int) -> None:
        runner, plan = self.runner, self.plan
        agent = runner.build_agent(name, seed, plan.track_model_dir)
        if agent.privileged:
            self._evaluate(name, seed, agent)
            return
        stage = runner.train_stage(name, seed, agent, plan.manifest, plan.track_key)
        if not runner.needs(stage):
            self._evaluate(name, seed, agent)
            return
        before = runner.checkpoint_before(stage)
        runner.display.line(f"[stage] {stage.name}: start on Ray")
        clock = Clock(stage.timing)

        def trained(extra: dict[str, Any]) -> None:
            runner.mark(stage.name, stage.key(), **extra)
            runner.after_training(name, seed, before)
            runner.display.line(f"[stage] {stage.name}: done in {clock.seconds:.1f} s")
            self._evaluate(name, seed, agent)

        self._submit(TRAIN, train_job, (self.config, plan, name, seed), self._train_resources(runner.devices[name]),
                     trained, clock)

    def _evaluate(self, name: str, seed: int, agent) -> None:
        runner, plan = self.runner, self.plan
        flops, serial = runner.needs_flops(name, agent), runner.needs_serial(name)
        if (flops or serial) and name not in self.measuring:
            self.measuring.add(name)

            def measured(result: dict[str, Any]) -> None:
                if "flops" in result:
                    runner.record_flops(name, result["flops"])
                if "serial" in result:
                    runner.record_serial(name, result["serial"])

            self._submit(MEASURE, measure_job, (self.config, plan, name, seed, flops, serial), {"num_cpus": 1},
                         measured, Clock(f"throughput/{name}") if serial else None)
        for task in self.runner.pending_tasks(name, seed):  # a shard a killed driver left: merged first
            runner.merge_shard(name, seed, task)
        tasks = runner.pending_tasks(name, seed)
        if not tasks:
            return
        n_envs = min(runner.preset.eval.n_envs or 1, self.cpus)
        shards: dict[int, dict[str, Any] | None] = {}
        clock = Clock(f"eval/{name}/seed{seed}")  # the time any of its shards ran

        def shard_done(task: int, stats: dict[str, Any] | None) -> None:
            shards[task] = stats
            runner.merge_shard(name, seed, task)
            if len(shards) == len(tasks):
                runner.record_shards(name, seed, [s for s in shards.values() if s], clock.seconds)

        resources = {"num_cpus": n_envs, **({"num_gpus": EVAL_GPU_SHARE} if is_cuda(runner.devices[name]) else {})}
        for task in tasks:
            self._submit(SHARD, eval_job, (self.config, plan, name, seed, task), resources,
                         lambda stats, task=task: shard_done(task, stats), clock)
