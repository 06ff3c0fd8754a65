"""The agent interface every method implements, and the registry that finds agents by name."""

from atm_bench.agents.base import (Agent, Budget, TaskInfo, TrainingData, VideoOverlay, agent_names, get_agent,
                                   register_agent)

__all__ = ["Agent", "Budget", "TaskInfo", "TrainingData", "VideoOverlay", "agent_names", "get_agent", "register_agent"]
