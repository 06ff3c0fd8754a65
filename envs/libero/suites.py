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

import gymnasium as gym
import numpy as np

from atm_bench.envs.libero.protocols import Protocol, get_protocol
from atm_bench.envs.libero.registration import GYM_IDS, register_libero_envs
from atm_bench.envs.libero.runtime import libero
from atm_bench.envs.libero.spaces import observation_space
from atm_bench.errors import UserError, choice_error

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
SUITE_ALIASES = {"libero_long": "libero_10"}


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
class Suite:
    """A suite resolved once (the CLI's `--suite` parses into one) and handed down: its tasks,
    Gym id, episode horizon under a protocol, spaces and env constructors. `str(suite)` is its
    canonical name, so it goes wherever a suite name does."""

    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def cli_name(self) -> str:
        return self.name.replace("_", "-")

    @property
    def gym_id(self) -> str:
        return GYM_IDS[self.name]

    @property
    def tasks(self) -> tuple["TaskSpec", ...]:
        return list_tasks(self.name)

    def task(self, index: int) -> "TaskSpec":
        return get_task(self.name, index)

    def horizon(self, protocol: str | Protocol, cap: int | None = None) -> int:
        """Max env steps of an episode: the protocol's for this suite, or `cap` when smaller."""
        return min(get_protocol(protocol).horizon(self.name), cap or 10**9)

    def observation_space(self, image_size: int | tuple[int, int], render_quality: str = "fast") -> gym.spaces.Dict:
        return observation_space(image_size, cameras=render_quality != "none")

    def make_env(self, task: int, **kwargs) -> gym.Env:
        """One task's env through its registered Gymnasium id (kwargs as `LiberoEnv`'s)."""
        register_libero_envs()
        return gym.make(self.gym_id, task=task, **kwargs)


def get_suite(name: str | Suite) -> Suite:
    """The suite a name (any spelling `canonical_suite` accepts) or a `Suite` stands for."""
    return Suite(canonical_suite(str(name)))


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
        return os.path.join(libero().get_libero_path("bddl_files"), self.problem_folder, self.bddl_file)


@lru_cache(maxsize=None)
def _benchmark(suite: str):
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
