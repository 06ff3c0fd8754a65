"""Scripted experts: goal parsing and planning (fast), and real-simulator solves (sim)."""

from __future__ import annotations

import numpy as np
import pytest

from atm_bench.errors import UserError
from atm_bench.experts.goals import Step, Subgoal, make_plan, parse_goal
from atm_bench.experts.scene import finger_axis, yaw_for_axis


def test_parse_goal_lowercases_and_checks_arity():
    goals = parse_goal([["On", "akita_black_bowl_1", "plate_1"], ["TurnOn", "flat_stove_1"]])
    assert goals == [Subgoal("on", ("akita_black_bowl_1", "plate_1")), Subgoal("turnon", ("flat_stove_1",))]
    with pytest.raises(UserError, match="argument"):
        parse_goal([["on", "bowl"]])
    with pytest.raises(UserError, match="no scripted skill"):
        parse_goal([["levitate", "bowl"]])


def test_parse_goal_flattens_and():
    goals = parse_goal([["and", ["open", "drawer_region"], ["in", "bowl", "drawer_region"]]])
    assert [g.predicate for g in goals] == ["open", "in"]


def test_plan_opens_drawer_before_putting_in_and_closes_after():
    goals = parse_goal([["close", "cab_bottom_region"], ["in", "bowl_1", "cab_bottom_region"]])
    plan = make_plan(goals, is_drawer=lambda r: r == "cab_bottom_region")
    assert plan == [
        Step("open", "cab_bottom_region"),
        Step("pick_place", "bowl_1", "cab_bottom_region"),
        Step("close", "cab_bottom_region"),
    ]


def test_plan_turns_knob_first_and_stacks_base_first():
    goals = parse_goal([["on", "moka_pot_1", "stove_cook_region"], ["turnon", "flat_stove_1"]])
    assert [s.skill for s in make_plan(goals)] == ["turn_on", "pick_place"]
    goals = parse_goal([["on", "bowl_1", "bowl_2"], ["in", "bowl_2", "tray_region"]])
    assert make_plan(goals) == [Step("pick_place", "bowl_2", "tray_region"), Step("pick_place", "bowl_1", "bowl_2")]


def test_plan_pushes_what_is_pushable():
    goals = parse_goal([["on", "plate_1", "front_region"]])
    assert make_plan(goals, is_pushable=lambda o, t: o == "plate_1") == [Step("push", "plate_1", "front_region")]


@pytest.mark.parametrize("yaw", [-1.2, -0.3, 0.0, 0.7, 1.5])
def test_yaw_for_axis_inverts_finger_axis(yaw):
    axis = finger_axis(yaw)
    assert yaw_for_axis(axis) == pytest.approx(yaw, abs=1e-9)
    assert yaw_for_axis(-axis) == pytest.approx(yaw, abs=1e-9)  # fingers are symmetric


@pytest.mark.sim
@pytest.mark.parametrize(
    "suite, task",
    [("libero_spatial", 0), ("libero_object", 3), ("libero_goal", 7), ("libero_10", 9)],
)
def test_expert_solves_task_in_simulator(suite, task):
    from atm_bench.envs.libero.env import LiberoEnv
    from atm_bench.experts import rollout

    env = LiberoEnv(suite, task, render_quality="none")
    try:
        ok, actions, states = rollout(env, init_state=0, seed=0, max_steps=450)
        assert ok, f"expert failed {suite} task {task} from init state 0"
        assert actions.shape[1] == 7 and len(actions) == len(states) <= 450
        assert np.all(np.abs(actions) <= 1.0)
        # states[t] is the state before actions[t]: replaying state 0 restores the init layout
        env.set_state(states[0])
        assert not env.check_success()
    finally:
        env.close()


@pytest.mark.sim
def test_expert_varies_with_seed():
    from atm_bench.envs.libero.env import LiberoEnv
    from atm_bench.experts import rollout

    env = LiberoEnv("libero_spatial", 1, render_quality="none")
    try:
        ok_a, acts_a, _ = rollout(env, init_state=2, seed=1, max_steps=300)
        ok_b, acts_b, _ = rollout(env, init_state=2, seed=2, max_steps=300)
        assert ok_a and ok_b
        n = min(len(acts_a), len(acts_b))
        assert not np.allclose(acts_a[:n], acts_b[:n])
    finally:
        env.close()


def test_plan_for_microwave_task_closes_door_after_putting_in():
    goals = parse_goal([["in", "mug_1", "microwave_1_heating_region"], ["close", "microwave_1"]])
    assert [s.skill for s in make_plan(goals)] == ["pick_place", "close"]


def _disc(radius: float, n: int = 24, z: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([radius * np.cos(t), radius * np.sin(t), np.full(n, z)], axis=1)


def test_handle_tip_finds_a_pans_handle_not_a_bowls_rim():
    from atm_bench.experts.primitives import handle_tip

    bowl = np.concatenate([_disc(0.07), _disc(0.07, z=0.05)])
    assert handle_tip(bowl) is None
    # a pan: a 10 cm disc with a 13 cm bar, 2.6 cm wide, along +y
    bar = np.array([[x, y, z] for x in (-0.013, 0.013) for y in (0.1, 0.23) for z in (0.03, 0.045)])
    pan = np.concatenate([_disc(0.1), _disc(0.1, z=0.04), bar])
    tip, inward = handle_tip(pan)
    assert tip == pytest.approx([0.0, 0.23], abs=1e-6)
    assert inward == pytest.approx([0.0, -1.0], abs=1e-6)
    # a mug: its handle sticks out only a few centimetres
    ear = np.array([[x, y, z] for x in (-0.01, 0.01) for y in (0.04, 0.06) for z in (0.02, 0.07)])
    mug = np.concatenate([_disc(0.04), _disc(0.04, z=0.09), ear])
    assert handle_tip(mug) is None


def _box_footprint(length: float, width: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    corners = [(a * length / 2, b * width / 2) for a in (-1, 1) for b in (-1, 1)]
    return np.array([[c * x - s * y, s * x + c * y, z] for x, y in corners for z in (0.0, 0.13)])


@pytest.mark.parametrize("angle", [-1.2, -0.4, 0.3, 1.0])
def test_slot_turn_lays_a_book_along_a_narrow_compartment(angle):
    from atm_bench.experts.primitives import slot_turn

    book = _box_footprint(0.11, 0.028, angle)
    turn = slot_turn(book, np.array([0.028, 0.062, 0.036]), yaw=0.0)  # the caddy's front compartment: long in y
    along = (angle + turn) % np.pi
    assert min(abs(along - np.pi / 2), abs(along + np.pi / 2 - np.pi)) < 1e-6  # the book's long side along y
    assert abs(turn) <= np.pi + 1e-9


def test_slot_turn_leaves_what_fits_or_is_not_long():
    from atm_bench.experts.primitives import slot_turn

    assert slot_turn(_box_footprint(0.11, 0.028, np.pi / 2), np.array([0.028, 0.062, 0.04]), 0.0) == 0.0  # aligned
    assert slot_turn(_box_footprint(0.06, 0.05, 0.7), np.array([0.03, 0.03, 0.04]), 0.0) == 0.0  # a box, not a book
    assert slot_turn(_box_footprint(0.11, 0.028, 0.7), np.array([0.2, 0.2, 0.04]), 0.0) == 0.0  # a wide basket


def test_plan_closes_an_already_open_drawer_before_opening_another():
    goals = parse_goal([["close", "cab_bottom_region"], ["open", "cab_top_region"]])
    plan = make_plan(goals, is_drawer=lambda r: r.startswith("cab_"))
    assert plan == [Step("close", "cab_bottom_region"), Step("open", "cab_top_region")]
    # a drawer the plan opens itself is still closed last
    goals = parse_goal([["in", "bowl_1", "cab_top_region"], ["close", "cab_top_region"]])
    assert [s.skill for s in make_plan(goals, is_drawer=lambda r: r.startswith("cab_"))] == ["open", "pick_place", "close"]


def test_perturbation_pushes_for_fixed_steps_in_unit_directions():
    from atm_bench.experts.expert import Perturbation

    assert not np.any([Perturbation(0.0, seed=3)() for _ in range(200)])
    push = Perturbation(0.3, seed=3)
    offsets = np.array([push() for _ in range(400)])
    on = np.abs(offsets).sum(axis=1) > 0
    assert 0.3 < on.mean() < 1.0
    assert np.allclose(offsets[on, 3:], 0.0)  # the hand's position only: never rotation or gripper
    assert np.allclose(np.linalg.norm(offsets[on, :3], axis=1), Perturbation.MAGNITUDE)
    # pushes come in runs of whole multiples of STEPS (a new one may start as one ends)
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]]))))[::2]
    assert np.all(runs[:-1] % Perturbation.STEPS == 0)
    again = Perturbation(0.3, seed=3)
    assert np.array_equal(offsets, np.array([again() for _ in range(400)]))
    with pytest.raises(ValueError, match="rate"):
        Perturbation(1.5, seed=0)


def test_perturbed_rollout_records_the_experts_actions_not_the_executed_ones(monkeypatch):
    from atm_bench.experts import expert as expert_module

    class Expert:
        failed = False

        def __init__(self, env, seed, approach=0.02):
            pass

        def reset(self):
            pass

        def act(self):
            return np.array([0.2, 0.0, -0.1, 0.0, 0.0, 0.0, -1.0])

    class Env:
        horizon = 300

        def __init__(self):
            self.executed = []

        def reset(self, seed, options):
            pass

        def get_state(self):
            return np.zeros(3)

        def step(self, action):
            self.executed.append(np.array(action))
            return None, 0.0, False, False, {"is_success": False}

    monkeypatch.setattr(expert_module, "ScriptedExpert", Expert)
    env = Env()
    _, actions, _ = expert_module.rollout(env, init_state=0, seed=5, perturb=0.1)
    executed = np.array(env.executed)
    assert np.allclose(actions, Expert(env, 5).act())  # the labels: the expert's own, every step
    pushed = np.abs(executed - actions).sum(axis=1) > 1e-9
    assert pushed.any() and not pushed.all()
    assert np.all(np.abs(executed) <= 1.0)
    assert np.allclose(executed[pushed, 3:], actions[pushed, 3:])
    plain = Env()
    expert_module.rollout(plain, init_state=0, seed=5)
    assert np.allclose(np.array(plain.executed), actions)


@pytest.mark.parametrize("approach", [0.02, 0.08])
def test_servo_runs_at_full_speed_beyond_the_approach_distance_and_slows_within_it(approach):
    from types import SimpleNamespace

    from atm_bench.experts.motion import Ctx, Style, servo

    scene = SimpleNamespace(eef_pos=np.zeros(3), eef_rot=np.eye(3))
    ctx = Ctx(scene, np.random.default_rng(0), Style(speed=1.0, noise=0.0, approach=approach))
    far = servo(ctx, np.array([0.0, 0.0, 2 * approach]), np.eye(3), grip=-1.0)
    near = servo(ctx, np.array([0.0, 0.0, approach / 4]), np.eye(3), grip=-1.0)
    assert far[2] == pytest.approx(1.0) and near[2] == pytest.approx(0.25)
    assert np.allclose(near[[0, 1, 3, 4, 5]], 0.0) and near[6] == -1.0
    # contact skills drive at a fixed lead with the default's gain, whatever the style's approach
    drive = servo(ctx, np.array([0.0, 0.0, 0.02]), np.eye(3), grip=1.0, approach=0.02)
    assert drive[2] == pytest.approx(1.0)


def test_style_rejects_an_approach_distance_that_cannot_be_one():
    from atm_bench.experts.motion import Style

    with pytest.raises(ValueError, match="approach distance"):
        Style.sample(np.random.default_rng(0), approach=0.0)
    a = Style.sample(np.random.default_rng(3))
    b = Style.sample(np.random.default_rng(3), approach=0.08)
    assert (a.speed, a.noise, a.hover) == (b.speed, b.noise, b.hover) and (a.approach, b.approach) == (0.02, 0.08)


def test_rollout_hands_the_approach_distance_to_the_expert(monkeypatch):
    import atm_bench.experts.expert as expert_module

    seen = []

    class Expert:
        failed = False

        def __init__(self, env, seed, approach):
            seen.append(approach)

        def reset(self):
            pass

        def act(self):
            return np.zeros(7)

    class Env:
        horizon = 3

        def reset(self, seed, options):
            pass

        def get_state(self):
            return np.zeros(2)

        def step(self, action):
            return None, 0.0, False, False, {"is_success": False}

    monkeypatch.setattr(expert_module, "ScriptedExpert", Expert)
    expert_module.rollout(Env(), init_state=0, seed=1)
    expert_module.rollout(Env(), init_state=0, seed=1, approach=0.08)
    assert seen == [0.02, 0.08]
