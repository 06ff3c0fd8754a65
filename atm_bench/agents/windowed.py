"""The base of the torch agents that act on a window of the last W encoded steps per env (ATM
and the BC family, UniPi): per-env windows that restart at each episode (the first step
repeated, as in training), in one place. Camera images become model tensors through
`atm_bench.atm.datasets.camera_images`, the counterpart of the training path's frame reader.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from atm_bench.agents.base import Agent


class WindowedAgent(Agent):
    """`on_episode_start` marks envs whose window restarts at their next step; `roll` appends a
    step to every env's windows and restarts the marked ones; `ensemble` turns predicted action
    chunks into this step's actions."""

    _fresh: np.ndarray | None = None  # (N,) True where an episode just began
    _restarted: np.ndarray | None = None  # (N,) the envs the last `roll` restarted
    _plans: torch.Tensor | None = None  # (N, K, A): summed predictions for each env's next K steps
    _counts: torch.Tensor | None = None  # (N, K): how many predictions each sum holds

    def on_episode_start(self, mask: np.ndarray) -> None:
        if self._fresh is not None:
            self._fresh |= np.asarray(mask, dtype=bool)

    def roll(self, windows: Sequence[torch.Tensor] | None, steps: Sequence[torch.Tensor],
             window: int) -> list[torch.Tensor]:
        """Windows (N, W, ...) with `steps` (N, ...) appended; for a new batch, and for envs marked
        fresh, the window is the step repeated W times. Clears the marks."""
        n = steps[0].shape[0]
        if windows is None or windows[0].shape[0] != n or self._fresh is None or len(self._fresh) != n:
            self._fresh = np.zeros(n, dtype=bool)
            self._restarted = np.ones(n, dtype=bool)
            return [s[:, None].repeat(1, window, *([1] * (s.dim() - 1))) for s in steps]
        rolled = [torch.cat([w[:, 1:], s[:, None]], dim=1) for w, s in zip(windows, steps)]
        self._restarted = self._fresh.copy()
        fresh = torch.from_numpy(self._fresh).to(steps[0].device)
        if fresh.any():
            for w, s in zip(rolled, steps):
                w[fresh] = s[fresh][:, None]
            self._fresh[:] = False
        return rolled

    def ensemble(self, plan: torch.Tensor) -> torch.Tensor:
        """Action chunks (N, K, A) predicted at this step -> actions (N, A): per env, the mean of
        every prediction made for this step in the last K steps of its episode (temporal
        ensembling, as ACT; K = 1 returns the plan's action). Call after `roll`, which says which
        envs restarted."""
        n, k, a = plan.shape
        if self._plans is None or self._plans.shape != plan.shape or self._restarted is None:
            self._plans, self._counts = torch.zeros_like(plan), plan.new_zeros(n, k)
        restart = torch.from_numpy(np.asarray(self._restarted, dtype=bool)).to(plan.device)
        self._plans[restart] = 0.0
        self._counts[restart] = 0.0
        self._plans += plan
        self._counts += 1.0
        action = self._plans[:, 0] / self._counts[:, :1]
        self._plans = torch.cat([self._plans[:, 1:], plan.new_zeros(n, 1, a)], dim=1)
        self._counts = torch.cat([self._counts[:, 1:], plan.new_zeros(n, 1)], dim=1)
        return action
