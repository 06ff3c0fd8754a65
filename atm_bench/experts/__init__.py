"""Scripted experts that solve LIBERO tasks from privileged simulator state (demo generation)."""

from atm_bench.experts.expert import ScriptedExpert, rollout
from atm_bench.experts.goals import Step, Subgoal, make_plan, parse_goal

__all__ = ["ScriptedExpert", "Step", "Subgoal", "make_plan", "parse_goal", "rollout"]
