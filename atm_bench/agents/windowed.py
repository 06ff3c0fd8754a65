"""The base of the torch agents that act on a window of the last W encoded steps per env (ATM
and the BC family, UniPi): per-env windows that restart at each episode (the first step
repeated, as in training), in one place. Camera images become model tensors through
`atm_bench.atm.datasets.camera_images`, the counterpart of the training path's frame reader.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import numpy as np
import torch

from atm_bench.agents.base import Agent
from atm_bench.devices import autocast


class WindowedAgent(Agent):
    """`on_episode_start` marks envs whose window restarts at their next step; `roll` appends a
    step to every env's windows and restarts the marked ones; `ensemble` turns predicted action
    chunks into this step's actions."""

    _fresh: np.ndarray | None = None  # (N,) True where an episode just began
    _restarted: np.ndarray | None = None  # (N,) the envs the last `roll` restarted
    _plans: torch.Tensor | None = None  # (N, K, A): summed predictions for each env's next K steps
    _counts: torch.Tensor | None = None  # (N, K): how many predictions each sum holds

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """`_act` once the models exist, under the device's autocast (bf16 on CUDA)."""
        self._require_models()
        with autocast(self.device):
            return self._act(obs)

    @abstractmethod
    def _require_models(self) -> None:
        """Raise a `UserError` when the agent has not been trained or loaded."""

    @abstractmethod
    def _act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Actions (N, A) for a batch of N env observations."""

    def proprio(self, obs: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint (N, 7) and gripper (N, 2) states on the device, float32 as in training."""
        return tuple(torch.as_tensor(np.asarray(obs[key]), dtype=torch.float32, device=self.device)
                     for key in ("joint_states", "gripper_states"))

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
