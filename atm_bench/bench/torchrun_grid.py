"""`torchrun --nproc_per_node N atm-bench run ...`: the runner's stages in N processes.

Rank 0 leads: it runs the runner as one process would (data, tracks, split, bookkeeping, FLOPs,
serial throughput, tables) and tells the other processes, the followers, what to do with it by
broadcast orders:
- `stage1`: the shared track model, trained by every process under DistributedDataParallel (the
  same global batch and schedule as one process: `learning/distributed.py`);
- `train`: one (agent, seed) training, by every process, for agents whose training runs under DDP
  (`Agent.distributed_training`: ATM and BC); any other agent rank 0 trains alone
  (`single_process`) while the followers wait for the next order;
- `eval`: one agent and seed's pending tasks dealt over the processes (task i to rank i mod N).
  Each process evaluates its tasks from the saved checkpoint into per-task shard files, which
  rank 0 merges into `results.jsonl` as `--executor ray` does (`Runner.merge_shard`), so the
  resume guarantee is the local executor's: a rerun merges what a killed run's shards hold and
  runs only the episodes not recorded;
- `done`.
Only rank 0 writes the run's bookkeeping; followers never print. The followers wait through
stages rank 0 runs alone, so the process group's timeout is `WAIT` instead of torch's 30 min.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from atm_bench.agents.base import get_agent
from atm_bench.bench.runner import Plan, RunConfig, Runner
from atm_bench.learning.distributed import (broadcast_from_main, gather_to_all, init_from_env, is_main, local_device,
                                            rank_and_world, single_process)

WAIT = timedelta(days=7)  # how long a follower waits for rank 0's next order (data generation, a long evaluation)


class TorchrunGrid:
    """The runner's executor under torchrun (`Runner.run(grid=...)` on rank 0, `follow` elsewhere).
    Joins the process group on construction; `device` is this process's (its local GPU on CUDA)."""

    def __init__(self, device: str) -> None:
        init_from_env(device, timeout=WAIT)
        self.device = local_device(device)
        self.rank, self.world = rank_and_world()
        self.leads = is_main()

    # -- rank 0 ---------------------------------------------------------------------------

    def run(self, runner: Runner, plan: Plan) -> None:
        self.runner, self.plan = runner, plan
        runner.display.line(f"[torchrun] {self.world} processes: DDP training for "
                            f"{', '.join(a for a in runner.agents if get_agent(a).distributed_training) or 'no agent'}"
                            f", evaluation dealt by task")
        self._order("plan", plan)
        if runner.needs_track_model(plan):
            stage = runner.track_model_stage(plan.manifest)
            if runner.needs(stage):
                self._order("stage1")
            runner.execute(stage)
        for name, seed in plan.pending:
            self._lead_agent(name, seed)
        self._order("done")

    def _order(self, *order: Any) -> None:
        broadcast_from_main(order)

    def _lead_agent(self, name: str, seed: int) -> None:
        runner, plan = self.runner, self.plan
        agent = runner.build_agent(name, seed, plan.track_model_dir)
        if not agent.privileged:
            if agent.distributed_training:
                if runner.needs(runner.train_stage(name, seed, agent, plan.manifest, plan.track_key)):
                    self._order("train", name, seed)
                runner.train_agent(name, seed, agent, plan.manifest, plan.track_key)
            else:
                with single_process():
                    runner.train_agent(name, seed, agent, plan.manifest, plan.track_key)
        runner.record_agent_flops(name, agent)
        for task in runner.pending_tasks(name, seed):  # shards a killed run left: merged first
            runner.merge_shard(name, seed, task)
        tasks = runner.pending_tasks(name, seed)
        if tasks:
            started = time.perf_counter()
            with runner.timing.timed(f"eval/{name}/seed{seed}"):  # written as it passes
                self._order("eval", name, seed, tasks)
                shards = [s for mine in gather_to_all(self._evaluate(runner, agent, name, seed, tasks)) for s in mine]
                for task in tasks:
                    runner.merge_shard(name, seed, task)
            runner.record_shards(name, seed, shards, time.perf_counter() - started)
        runner.measure_serial(name, agent, runner.eval_config(name, seed))

    def _evaluate(self, runner: Runner, agent, name: str, seed: int, tasks: tuple[int, ...]) -> list[dict[str, Any]]:
        """This process's share of the tasks, each into its shard file; their throughputs."""
        stats = [runner.evaluate_shard(agent, name, seed, task) for task in tasks[self.rank::self.world]]
        return [s for s in stats if s is not None]

    # -- the other ranks ----------------------------------------------------------------------

    def follow(self, config: RunConfig) -> None:
        """Carry out rank 0's orders until it says `done`."""
        runner, plan = Runner(config, progress=False), None
        while True:
            kind, *args = broadcast_from_main()
            if kind == "done":
                return
            if kind == "plan":
                plan = args[0]
                runner.rendering = plan.rendering
            elif kind == "stage1":
                runner.track_model_stage(plan.manifest).run()
            elif kind == "train":
                name, seed = args
                agent = runner.build_agent(name, seed, plan.track_model_dir)
                runner.train_stage(name, seed, agent, plan.manifest, plan.track_key).run()
            elif kind == "eval":
                name, seed, tasks = args
                agent = runner.build_agent(name, seed, plan.track_model_dir)
                if not agent.privileged:
                    agent.load(runner.train_stage(name, seed, agent, plan.manifest, plan.track_key).checkpoint)
                gather_to_all(self._evaluate(runner, agent, name, seed, tasks))
