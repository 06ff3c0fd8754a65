"""The LIBERO environments on the real simulator: reset/step, upright images, success,
protocol horizon, Gymnasium's checker, physics untouched by fast rendering, vector envs."""

import subprocess
import sys

import numpy as np
import pytest

from atm_bench.envs.libero.env import LiberoEnv
from atm_bench.envs.libero.suites import SUITES
from atm_bench.envs.libero.vector import make_vector_env
from atm_bench.errors import UserError

pytestmark = pytest.mark.sim

NOOP = np.array([0, 0, 0, 0, 0, 0, -1.0])


@pytest.fixture(scope="module")
def goal_env():
    env = LiberoEnv("libero-goal", task=0, render_quality="fast")
    yield env
    env.close()


def test_reset_and_step_follow_the_spaces(goal_env):
    obs, info = goal_env.reset(seed=0, options={"init_state": 3})
    assert goal_env.observation_space.contains(obs)
    assert info["init_state"] == 3 and info["instruction"] == "open the middle layer of the drawer"
    assert goal_env.instruction == info["instruction"]
    obs, reward, terminated, truncated, info = goal_env.step(goal_env.action_space.sample())
    assert goal_env.observation_space.contains(obs)
    assert (reward, terminated, truncated, info["is_success"]) == (0.0, False, False, False)
    assert not np.array_equal(obs["agentview"], obs["eye_in_hand"]), "the two views must differ"


def test_images_are_upright(goal_env):
    """Robot geoms sit in the top part of the agentview image (the camera faces the robot),
    and the gripper fingers in the bottom part of the wrist image."""
    goal_env.reset(options={"init_state": 0})
    frames = goal_env.renderer.render(goal_env.sim.data._data, segmentation=True)
    model = goal_env.sim.model._model
    robot_geoms = [g for g in range(model.ngeom) if model.geom(g).name.startswith(("robot0_", "gripper0_"))]
    rows = np.nonzero(np.isin(frames["agentview"].segmentation, robot_geoms))[0]
    assert rows.size and rows.mean() < 0.45 * goal_env.height
    finger_geoms = [g for g in range(model.ngeom) if "finger" in model.geom(g).name]
    rows = np.nonzero(np.isin(frames["robot0_eye_in_hand"].segmentation, finger_geoms))[0]
    assert rows.size and rows.mean() > 0.6 * goal_env.height


def test_reference_quality_is_robosuite_stock_pixels_flipped():
    """`reference` must equal what LIBERO/robosuite render, turned upright once."""
    from robosuite.utils.binding_utils import MjRenderContextOffscreen

    env = LiberoEnv("libero_object", task=1, render_quality="reference")
    try:
        env.reset(options={"init_state": 2})
        context = MjRenderContextOffscreen(env.sim, device_id=-1)  # runs sim.forward()
        context.vopt.geomgroup[0] = 0
        ours = env.renderer.render(env.sim.data._data)
        for camera in ("agentview", "robot0_eye_in_hand"):
            stock = env.sim.render(camera_name=camera, width=128, height=128)
            assert np.array_equal(ours[camera].rgb, stock[::-1])
    finally:
        env.close()


def test_fast_rendering_does_not_touch_physics_and_looks_like_reference():
    fast = LiberoEnv("libero_spatial", task=0, render_quality="fast")
    ref = LiberoEnv("libero_spatial", task=0, render_quality="reference")
    bare = LiberoEnv("libero_spatial", task=0, render_quality="none")
    try:
        rng = np.random.default_rng(0)
        observations = [env.reset(seed=0, options={"init_state": 5})[0] for env in (fast, ref, bare)]
        for _ in range(8):
            action = rng.uniform(-1, 1, 7)
            observations = [env.step(action)[0] for env in (fast, ref, bare)]
        assert np.array_equal(fast.get_state(), bare.get_state())
        assert np.array_equal(ref.get_state(), bare.get_state())
        assert "agentview" not in observations[2]
        for view in ("agentview", "eye_in_hand"):
            diff = np.abs(observations[0][view].astype(int) - observations[1][view].astype(int))
            assert diff.mean() < 10, f"fast {view} strays from reference by {diff.mean():.1f} levels"
    finally:
        for env in (fast, ref, bare):
            env.close()


def test_success_is_detected_latched_and_terminates(goal_env):
    goal_env.reset(options={"init_state": 0})
    sim = goal_env.sim
    joint = sim.model._model.joint("wooden_cabinet_1_middle_level")
    sim.data._data.qpos[joint.qposadr[0]] = -0.15  # LIBERO's "open" range for the drawer
    sim.forward()
    _, reward, terminated, truncated, info = goal_env.step(NOOP)
    assert info["is_success"] and terminated and not truncated and reward == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        goal_env.step(NOOP)


def test_truncated_at_the_protocol_horizon(goal_env, monkeypatch):
    monkeypatch.setattr(goal_env, "horizon", 3)
    goal_env.reset(options={"init_state": 1})
    results = [goal_env.step(NOOP)[2:4] for _ in range(3)]
    assert results == [(False, False), (False, False), (False, True)]


def test_bad_init_state_and_nan_action(goal_env):
    with pytest.raises(UserError, match=r"valid: 0\.\.49"):
        goal_env.reset(options={"init_state": 50})
    goal_env.reset(options={"init_state": 0})
    with pytest.raises(ValueError, match="NaN"):
        goal_env.step(np.full(7, np.nan))


def test_settling_steps_follow_the_protocol():
    env = LiberoEnv("libero_goal", task=0, render_quality="none", protocol="openvla")
    try:
        env.reset(options={"init_state": 0})
        settled_openvla = env.get_state()
        env.protocol = env.protocol.__class__(**{**env.protocol.__dict__, "settle_steps": 0})
        env.reset(options={"init_state": 0})
        assert np.allclose(env.get_state()[1:], env.init_states[0][1:])
        assert not np.allclose(settled_openvla[1:], env.init_states[0][1:])
    finally:
        env.close()


@pytest.mark.parametrize("suite", SUITES)
def test_gymnasium_check_env(suite):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import atm_bench.envs  # noqa: F401

    from atm_bench.envs.libero.suites import GYM_IDS

    env = gym.make(GYM_IDS[suite], task=1, render_quality="fast", protocol="atm", image_size=128)
    try:
        check_env(env.unwrapped, skip_render_check=False)
        env.reset(seed=0)
        assert env.render().shape == (128, 256, 3)
    finally:
        env.close()


def test_vector_env_gives_each_worker_its_init_state():
    venv = make_vector_env("libero_goal", 2, n_envs=2, render_quality="fast")
    try:
        venv.set_attr("next_init_state", [0, 7])
        obs, info = venv.reset()
        assert obs["agentview"].shape == (2, 128, 128, 3)
        assert list(info["init_state"]) == [0, 7]
        assert not np.array_equal(obs["agentview"][0], obs["agentview"][1])
        for _ in range(3):
            obs, reward, terminated, truncated, info = venv.step(np.tile(NOOP, (2, 1)))
        assert obs["joint_states"].shape == (2, 7) and not terminated.any()
    finally:
        venv.close()


MAKE_VEC = """
import numpy as np, gymnasium as gym
import atm_bench.envs
from atm_bench.envs.libero.suites import GYM_IDS
{before}
venv = gym.make_vec(GYM_IDS["libero_goal"], num_envs=2, vectorization_mode="{mode}", task=0, image_size=32)
try:
    obs, info = venv.reset(seed=0, options={{"init_state": 3}})
    assert obs["agentview"].shape == (2, 32, 32, 3) and obs["agentview"].any()
    assert list(info["init_state"]) == [3, 3]
    obs, *_ = venv.step(np.tile(np.array([0, 0, 0, 0, 0, 0, -1.0]), (2, 1)))
    assert obs["eye_in_hand"].shape == (2, 32, 32, 3) and obs["eye_in_hand"].any()
    print("ok")
finally:
    venv.close()
"""


def _script(code: str) -> subprocess.CompletedProcess:
    """A user's script in a fresh interpreter (a hang fails after 5 minutes instead of blocking CI)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_gymnasium_make_vec_works_as_users_call_it(mode):
    """`gym.make_vec(..., vectorization_mode="async")` with Gymnasium's default start method (fork):
    Gymnasium builds one env in the parent before forking, which once left every worker hung on
    its first render; the env now makes its renderer lazily, in the process that renders."""
    result = _script(MAKE_VEC.format(mode=mode, before=""))
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_forking_after_rendering_fails_with_the_fix_instead_of_hanging():
    """A process that has rendered cannot hand GL to forked workers: they hung on their first
    render; now the worker refuses with the fix, and the error reaches the user."""
    before = "from atm_bench.envs.libero.env import LiberoEnv; LiberoEnv('libero_goal', 0, image_size=32).reset(seed=0)"
    result = _script(MAKE_VEC.format(mode="async", before=before))
    assert result.returncode != 0 and "GL state does not survive a fork" in result.stderr, result.stderr[-2000:]
