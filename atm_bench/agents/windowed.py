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
    step to every env's windows and restarts the marked ones."""

    _fresh: np.ndarray | None = None  # (N,) True where an episode just began

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
            return [s[:, None].repeat(1, window, *([1] * (s.dim() - 1))) for s in steps]
        rolled = [torch.cat([w[:, 1:], s[:, None]], dim=1) for w, s in zip(windows, steps)]
        fresh = torch.from_numpy(self._fresh).to(steps[0].device)
        if fresh.any():
            for w, s in zip(rolled, steps):
                w[fresh] = s[fresh][:, None]
            self._fresh[:] = False
        return rolled
