"""A variant of a built-in agent is a subclass: ATM without late fusion (the action head does not
see the predicted tracks; they still enter the spatial transformer as tokens).

Everything else is inherited: the contract (`uses_track_model = True`, so a run hands it the
run's shared stage-1 track model instead of training its own; `context_fields`, the run settings
its constructor receives), training, acting, FLOPs, saving. The ablation flag is part of the
agent's resolved config, so the run caches its training apart from ATM's.
"""

from __future__ import annotations

from typing import Any

from atm_bench.atm.agent import ATMAgent


class ATMNoLateFusionAgent(ATMAgent):
    name = "atm-no-late-fusion"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(policy_overrides={"late_fusion": False}, **kwargs)
