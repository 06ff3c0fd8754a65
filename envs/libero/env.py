"""One LIBERO task as a Gymnasium environment.

Wraps LIBERO's own task class (its BDDL scene, its Panda with OSC_POSE delta end-effector
control at 20 Hz, its goal check) and adds what evaluation needs: fixed initial states by
index, the protocol's settling steps, latched success, upright images from a fast renderer,
and the Gymnasium 5-tuple API.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import gymnasium as gym
import numpy as np

from atm_bench.envs.libero.protocols import get_protocol
from atm_bench.envs.libero.rendering import RENDER_QUALITIES, SceneRenderer
from atm_bench.envs.libero.spaces import CAMERAS, action_space, observation_space
from atm_bench.envs.libero.runtime import libero
from atm_bench.envs.libero.suites import canonical_suite, get_task, load_init_states
from atm_bench.errors import UserError, choice_error

OPEN_GRIPPER_NOOP = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)


class LiberoEnv(gym.Env):
    """A LIBERO task: `reset(options={"init_state": i})`, 7-d delta EEF actions in [-1, 1].

    render_quality: `fast` (default; decimated render meshes, no MSAA), `reference` (stock
    LIBERO pixels, to match official datasets) or `none` (physics only: no images in the
    observation, for scripted rollouts that are rendered later by replaying states).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        suite: str = "libero_goal",
        task: int = 0,
        image_size: int | tuple[int, int] = 128,
        render_quality: str = "fast",
        protocol: str = "atm",
        render_mode: str | None = "rgb_array",
        camera_depths: bool = False,
    ) -> None:
        self.suite = canonical_suite(suite)
        self.spec_task = get_task(self.suite, task)
        self.protocol = get_protocol(protocol)
        if render_quality not in RENDER_QUALITIES + ("none",):
            raise choice_error("render quality", render_quality, RENDER_QUALITIES + ("none",))
        if render_mode not in (None, "rgb_array"):
            raise choice_error("render mode", render_mode, ["rgb_array"])
        self.render_quality = render_quality
        self.render_mode = render_mode
        self.height, self.width = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        self.camera_depths = camera_depths
        self.horizon = self.protocol.horizon(self.suite)
        self.instruction = self.spec_task.instruction
        self.init_states = load_init_states(self.suite, self.spec_task.index)

        self._env = self._make_task_env()
        self.sim = self._env.sim
        self._renderer: SceneRenderer | None = None
        self._renderer_pid: int | None = None

        self.observation_space = observation_space((self.height, self.width), render_quality != "none", camera_depths)
        self.action_space = action_space()

        self._steps = 0
        self._success = False
        self._init_index: int | None = None
        self._needs_reset = True
        # Vector envs pass one `options` to every worker; evaluation gives each worker its own
        # init state with `vector_env.set_attr("next_init_state", [i0, i1, ...])` before reset.
        self.next_init_state: int | None = None
        self._raw_obs: dict[str, np.ndarray] = {}

    # -- construction -------------------------------------------------------------------

    @property
    def renderer(self) -> SceneRenderer | None:
        """The scene renderer (None without cameras), made on first use in the process that uses
        it. A GL context must not cross a fork: Gymnasium's `AsyncVectorEnv` builds one env in the
        parent before it forks its workers, and a worker that inherited the parent's context (and
        the GL driver's threads, which do not survive a fork) hung on its first render. A renderer
        inherited from another process is dropped unclosed (it belongs to the parent) and made anew."""
        if self.render_quality == "none":
            return None
        if self._renderer is None or self._renderer_pid != os.getpid():
            self._renderer = SceneRenderer(self.sim.model._model, self._env.model.get_xml(), list(CAMERAS.values()),
                                           self.height, self.width, quality=self.render_quality)
            self._renderer_pid = os.getpid()
        return self._renderer

    def _make_task_env(self):
        """LIBERO's task class, built directly (no ControlEnv) so we choose every option."""
        libero()
        import robosuite
        from libero.libero.envs import TASK_MAPPING
        from libero.libero.envs.bddl_utils import get_problem_info

        bddl = self.spec_task.bddl_path
        problem = get_problem_info(bddl)["problem_name"]
        with contextlib.redirect_stdout(io.StringIO()):
            return TASK_MAPPING[problem](
                bddl,
                robots=["Panda"],
                controller_configs=robosuite.load_controller_config(default_controller="OSC_POSE"),
                gripper_types="default",
                initialization_noise=None,
                use_camera_obs=False,
                has_renderer=False,
                has_offscreen_renderer=False,
                render_camera="frontview",
                control_freq=20,
                horizon=10**9,
                ignore_done=True,
                hard_reset=False,
                camera_names=list(CAMERAS.values()),
                camera_heights=self.height,
                camera_widths=self.width,
            )

    # -- Gymnasium API ------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        index = options.get("init_state", self.next_init_state)
        self.next_init_state = None
        if index is None:
            index = int(self.np_random.integers(len(self.init_states)))
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < len(self.init_states):
            raise UserError(
                f"unknown init state {index!r} for {self.suite} task {self.spec_task.index}; "
                f"valid: 0..{len(self.init_states) - 1}"
            )
        self._init_index = int(index)
        self.reset_scene()
        self.set_state(self.init_states[self._init_index])
        for _ in range(self.protocol.settle_steps):
            self._raw_obs = self._env.step(OPEN_GRIPPER_NOOP)[0]
        self._steps = 0
        self._success = bool(self._env._check_success())
        self._needs_reset = False
        return self._observation(), self._info()

    def reset_scene(self) -> None:
        """LIBERO's own reset of the scene (object and fixture placement), seeded; also used to
        sample fresh initial states. Makes an episode a function of (seed, init state) alone.

        LIBERO's reset re-samples fixture placements (cabinet, stove: ~1 cm) from NumPy's
        global RNG, and those live in the model, not in the init state: draw them from this
        env's seeded generator. robosuite's Panda gripper command ramps from its previous
        value and survives resets: start it where a fresh env starts it (zero).
        """
        saved = np.random.get_state()
        np.random.seed(int(self.np_random.integers(2**31)))
        try:
            self._env.reset()
        finally:
            np.random.set_state(saved)
        for robot in self._env.robots:
            robot.gripper.current_action = np.zeros(robot.gripper.dof)

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        action = np.asarray(action, dtype=np.float64).reshape(7)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf at step {self._steps}: {action.tolist()}")
        self._raw_obs = self._env.step(np.clip(action, -1.0, 1.0))[0]
        self._steps += 1
        self._success = self._success or bool(self._env._check_success())
        terminated = self._success
        truncated = not terminated and self._steps >= self.horizon
        self._needs_reset = terminated or truncated
        return self._observation(), float(terminated), terminated, truncated, self._info()

    def render(self):
        if self.renderer is None:
            raise RuntimeError("render_quality='none' has no cameras; make the env with 'fast' or 'reference'")
        frames = self.renderer.render(self.sim.data._data)
        return np.concatenate([frames[c].rgb for c in CAMERAS.values()], axis=1)

    def close(self):
        if self._renderer is not None and self._renderer_pid == os.getpid():
            self._renderer.close()
        self._renderer = None
        if getattr(self, "_env", None) is not None:
            self._env.close()
            self._env = None

    # -- privileged access (experts, data generation, tracks) ---------------------------

    @property
    def task_env(self):
        """LIBERO's task object (robosuite env): objects, sites, goal state."""
        return self._env

    def get_state(self) -> np.ndarray:
        """The flattened MuJoCo state, as LIBERO datasets store it in `states`."""
        return np.asarray(self.sim.get_state().flatten())

    def set_state(self, state: np.ndarray) -> None:
        """Set a flattened MuJoCo state and recompute positions (no physics step)."""
        self.sim.set_state_from_flattened(np.asarray(state))
        self.sim.forward()
        self._env._update_observables(force=True)
        self._raw_obs = self._env._get_observations(force_update=True)

    def get_body_poses(self) -> np.ndarray:
        """(nbody, 7) body pos + quat of the model. LIBERO places fixtures (cabinet, stove,
        rack) by writing them into the model at reset, outside the flattened state: a replay
        needs them too to draw and track the scene where physics had it."""
        model = self.sim.model._model
        return np.concatenate([model.body_pos, model.body_quat], axis=1).copy()

    def set_body_poses(self, poses: np.ndarray) -> None:
        poses = np.asarray(poses)
        model = self.sim.model._model
        if poses.shape != (model.nbody, 7):
            raise ValueError(f"body poses must be ({model.nbody}, 7) for this scene, got {poses.shape}")
        model.body_pos[:] = poses[:, :3]
        model.body_quat[:] = poses[:, 3:]
        self.sim.forward()

    def check_success(self) -> bool:
        return bool(self._env._check_success())

    def observation(self) -> dict[str, np.ndarray]:
        """The observation for the current simulator state (e.g. after `set_state`)."""
        return self._observation()

    # -- internals ------------------------------------------------------------------------

    def _observation(self) -> dict[str, np.ndarray]:
        obs = self._proprio()
        if self.renderer is not None:
            frames = self.renderer.render(self.sim.data._data, depth=self.camera_depths)
            for key, cam in CAMERAS.items():
                obs[key] = frames[cam].rgb
                if self.camera_depths:
                    obs[f"{key}_depth"] = frames[cam].depth
        return obs

    def _proprio(self) -> dict[str, np.ndarray]:
        """LIBERO's dataset proprioception, from robosuite's own observables."""
        from robosuite.utils.transform_utils import quat2axisangle

        raw = self._raw_obs
        ee = np.concatenate([raw["robot0_eef_pos"], quat2axisangle(raw["robot0_eef_quat"])])
        return {
            "joint_states": np.array(raw["robot0_joint_pos"], dtype=np.float64),
            "gripper_states": np.array(raw["robot0_gripper_qpos"], dtype=np.float64),
            "ee_states": ee.astype(np.float64),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "is_success": self._success,
            "instruction": self.instruction,
            "suite": self.suite,
            "task": self.spec_task.index,
            "init_state": self._init_index,
            "steps": self._steps,
        }

