"""LIBERO's suites and tasks: names, instructions, BDDL files and the 50 fixed initial states.

A task's instruction is its BDDL file's `:language`: the sentence LIBERO's env reports
(`env.language_instruction`) and every LIBERO dataset stores (`problem_info`), so demos, training
and evaluation read one sentence. LIBERO's benchmark objects also carry `task.language`, a sentence
made from the task's file name; it differs for 29 of the 130 tasks ("open the middle drawer of the
cabinet" against the BDDL's "open the middle layer of the drawer") and is not used.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from atm_bench.errors import UserError, choice_error

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
SUITE_ALIASES = {"libero_long": "libero_10"}
GYM_IDS = {
    "libero_spatial": "atm_bench/LIBERO-Spatial-v0",
    "libero_object": "atm_bench/LIBERO-Object-v0",
    "libero_goal": "atm_bench/LIBERO-Goal-v0",
    "libero_10": "atm_bench/LIBERO-10-v0",
    "libero_90": "atm_bench/LIBERO-90-v0",
}


def canonical_suite(name: str) -> str:
    """`libero-goal`, `libero_goal` and `LIBERO-Goal` all name `libero_goal`."""
    key = str(name).strip().lower().replace("-", "_")
    key = SUITE_ALIASES.get(key, key)
    if key not in SUITES:
        raise choice_error("suite", name, [s.replace("_", "-") for s in SUITES])
    return key


def cli_name(suite: str) -> str:
    """How a suite is written on the command line: `libero-goal`."""
    return canonical_suite(suite).replace("_", "-")


@dataclass(frozen=True)
class TaskSpec:
    """One LIBERO task: where its BDDL and initial states live, and its instruction."""

    suite: str
    index: int
    name: str
    instruction: str
    problem_folder: str
    bddl_file: str
    init_states_file: str

    @property
    def bddl_path(self) -> str:
        from atm_bench.envs.libero.runtime import libero

        return os.path.join(libero().get_libero_path("bddl_files"), self.problem_folder, self.bddl_file)


@lru_cache(maxsize=None)
def _benchmark(suite: str):
    from atm_bench.envs.libero.runtime import libero

    libero()
    from libero.libero import benchmark

    with contextlib.redirect_stdout(io.StringIO()):
        return benchmark.get_benchmark_dict()[suite](task_order_index=0)


def bddl_instruction(bddl_path: str) -> str:
    """The `:language` sentence of a BDDL problem file (the task's one instruction)."""
    from libero.libero.envs.bddl_utils import get_problem_info

    return get_problem_info(bddl_path)["language_instruction"]


@lru_cache(maxsize=None)
def list_tasks(suite: str) -> tuple[TaskSpec, ...]:
    """All tasks of a suite in LIBERO's standard order (task order index 0)."""
    from atm_bench.envs.libero.runtime import libero

    suite = canonical_suite(suite)
    bench = _benchmark(suite)
    bddl_root = libero().get_libero_path("bddl_files")
    return tuple(
        TaskSpec(
            suite=suite,
            index=i,
            name=t.name,
            instruction=bddl_instruction(os.path.join(bddl_root, t.problem_folder, t.bddl_file)),
            problem_folder=t.problem_folder,
            bddl_file=t.bddl_file,
            init_states_file=t.init_states_file,
        )
        for i, t in enumerate(bench.tasks)
    )


def get_task(suite: str, index: int) -> TaskSpec:
    tasks = list_tasks(suite)
    if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < len(tasks):
        raise UserError(
            f"unknown task index {index!r} for {cli_name(suite)}; valid: 0..{len(tasks) - 1} "
            f"(see `atm-bench envs list --suite {cli_name(suite)}`)"
        )
    return tasks[int(index)]


@lru_cache(maxsize=64)
def load_init_states(suite: str, index: int) -> np.ndarray:
    """The task's fixed initial states, (50, state_dim) flattened MuJoCo states."""
    spec = get_task(suite, index)
    states = np.array(_benchmark(spec.suite).get_task_init_states(spec.index))
    states.setflags(write=False)
    return states
