"""Evaluation protocols as data. Results record the protocol's name, since settings shift
success rates by ~20 points between codebases (see the reference)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from atm_bench.errors import choice_error


@dataclass(frozen=True)
class Protocol:
    """How a policy is evaluated on one task.

    `horizons` maps suite -> max env steps per episode (after settling);
    `settle_steps` no-op steps with the gripper open follow setting the initial state.
    """

    name: str
    episodes_per_task: int
    horizons: Mapping[str, int]
    settle_steps: int
    description: str = ""
    n_envs: int = field(default=10)

    def horizon(self, suite: str) -> int:
        return self.horizons[suite]


_ALL = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")

PROTOCOLS: Mapping[str, Protocol] = MappingProxyType(
    {
        "atm": Protocol(
            name="atm",
            episodes_per_task=20,
            horizons=MappingProxyType({s: 600 for s in _ALL}),
            settle_steps=5,
            description="ATM paper: 20 episodes per task, horizon 600 for every suite, 5 settling steps",
        ),
        "openvla": Protocol(
            name="openvla",
            episodes_per_task=50,
            horizons=MappingProxyType(
                {
                    "libero_spatial": 220,
                    "libero_object": 280,
                    "libero_goal": 300,
                    "libero_10": 520,
                    "libero_90": 400,
                }
            ),
            settle_steps=10,
            description="OpenVLA-style: 50 episodes per task, per-suite horizons, 10 settling steps",
        ),
    }
)


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise choice_error("protocol", name, PROTOCOLS) from None
