"""LIBERO's five suites as Gymnasium environments, with fast headless rendering."""

from atm_bench.envs.libero.protocols import PROTOCOLS, Protocol, get_protocol
from atm_bench.envs.libero.suites import SUITES, TaskSpec, canonical_suite, get_task, list_tasks

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "SUITES",
    "TaskSpec",
    "canonical_suite",
    "get_protocol",
    "get_task",
    "list_tasks",
]
