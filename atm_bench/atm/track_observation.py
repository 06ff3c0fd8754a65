"""Predicted point tracks as observations: a Gymnasium wrapper that runs a track transformer on
each view's current (upright) image for a fixed set of query points and adds `<view>_tracks`
(N, L, 2) in normalised (x, y) = (column / W, row / H), so any agent can consume ATM's track
predictions. It lives beside the model, not in the env layer: the env knows nothing of models.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from atm_bench.atm.policy import policy_query_points
from atm_bench.atm.stages import load_track_model
from atm_bench.learning.frames import camera_images
from atm_bench.learning.language import embed_instructions

DEFAULT_VIEWS = ("agentview", "eye_in_hand")


class TrackObservation(gym.ObservationWrapper):
    """Add `<view>_tracks` (N, L, 2) float32 for each view.

    track_model: a `TrackTransformer` or a stage-1 checkpoint directory. queries: (N, 2)
    normalised points (default: the policy's 32-point double grid). text: the instruction
    embedding (dim,) the model expects; by default the env's `instruction` is embedded with the
    encoder the model was trained with. Tracks may leave [0, 1] (points move out of view), so
    the space is unbounded.
    """

    def __init__(self, env: gym.Env, track_model: Any, views: Sequence[str] = DEFAULT_VIEWS,
                 queries: np.ndarray | None = None, text: np.ndarray | None = None):
        super().__init__(env)
        if not hasattr(track_model, "predict"):
            track_model, config = load_track_model(track_model)
            self._encoder = config.get("text_encoder")
        else:
            self._encoder = None
        self.model = track_model.eval()
        self.views = tuple(views)
        q = policy_query_points(32) if queries is None else torch.as_tensor(queries, dtype=torch.float32)
        self.queries = q.reshape(-1, 2)
        self._text = None if text is None else torch.as_tensor(text, dtype=torch.float32).reshape(1, -1)
        length = self.model.cfg.track_len
        obs_spaces = dict(env.observation_space.spaces)
        for view in self.views:
            if view not in obs_spaces:
                raise ValueError(f"the env observation has no '{view}' image; keys: {sorted(obs_spaces)}")
            obs_spaces[f"{view}_tracks"] = spaces.Box(-np.inf, np.inf, (len(self.queries), length, 2), np.float32)
        self.observation_space = spaces.Dict(obs_spaces)

    def _text_embedding(self):
        if self._text is None:
            instruction = getattr(self.env.unwrapped, "instruction", None)
            if instruction is None:
                raise ValueError("the env has no `instruction`; pass `text=` (an instruction embedding)")
            self._text = torch.from_numpy(embed_instructions([instruction], self._encoder))
        return self._text

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        batch = {v: np.asarray(observation[v])[None] for v in self.views}
        images = camera_images(batch, self.views, self.model.cfg.image_hw)[0]  # (V, 3, H, W)
        queries = self.queries[None].expand(len(self.views), -1, -1)
        text = self._text_embedding().expand(len(self.views), -1)
        tracks = self.model.predict(images, queries, text).numpy().astype(np.float32)
        out = dict(observation)
        for view, t in zip(self.views, tracks):
            out[f"{view}_tracks"] = t
        return out
