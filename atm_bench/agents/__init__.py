"""The agent interface every method implements, the run context agents are built from, and the
registry that finds agents by name."""

from atm_bench.agents.base import (BUILTIN_AGENTS, Agent, Budget, RunContext, TaskInfo, TrainingData, VideoOverlay,
                                   agent_names, get_agent, make_agent, register_agent)

__all__ = ["BUILTIN_AGENTS", "Agent", "Budget", "RunContext", "TaskInfo", "TrainingData", "VideoOverlay", "agent_names",
           "get_agent", "make_agent", "register_agent"]
