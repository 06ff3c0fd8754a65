"""The scripted expert: plan from the BDDL goal, run primitives, verify with LIBERO's predicates.

`ScriptedExpert(env, seed)` is a plain per-env controller: `reset()` after the env is reset,
then `act()` once per step. It needs privileged simulator state, so it runs where the env
runs (in-process or inside an env worker). `rollout()` runs one physics-only episode and
records the states that data generation replays to render frames.
"""

from __future__ import annotations

from typing import Generator

import numpy as np

from atm_bench.experts import primitives as P
from atm_bench.experts.goals import Step, Subgoal, make_plan, parse_goal
from atm_bench.experts.motion import APPROACH, OPEN, Ctx, Style, hold
from atm_bench.experts.scene import Scene

MAX_ATTEMPTS = 3


class ScriptedExpert:
    """Solves a LIBERO task from privileged state; `done` once the goal holds, `failed` when it gave up."""

    def __init__(self, env, seed: int = 0, approach: float = APPROACH) -> None:
        self.env = env
        self.seed = int(seed)
        self.approach = approach
        self.scene: Scene | None = None
        self.plan: list[Step] = []
        self.subgoals: list[Subgoal] = []
        self.done = False
        self.failed = False
        self._gen: Generator[np.ndarray, None, bool] | None = None
        self._ctx: Ctx | None = None

    # -- public API ----------------------------------------------------------------------

    def reset(self) -> None:
        """Plan from the goal and the current simulator state (call after `env.reset`)."""
        self.scene = Scene(self.env)
        rng = np.random.default_rng(self.seed)
        self._ctx = Ctx(self.scene, rng, Style.sample(rng, self.approach))
        self.subgoals = parse_goal(self.scene.task.parsed_problem["goal_state"])
        self.plan = self._clear_drawer_paths(make_plan(self.subgoals, self._is_drawer, self._is_pushable))
        self.done = False
        self.failed = False
        self._gen = self._run()

    def act(self) -> np.ndarray:
        """The next 7-d action in [-1, 1]; once done or failed it holds still with the gripper open."""
        if self._gen is None:
            raise RuntimeError("call ScriptedExpert.reset() after env.reset() and before act()")
        try:
            return next(self._gen).astype(np.float64)
        except StopIteration:
            return np.array([0, 0, 0, 0, 0, 0, self._ctx.grip if self._ctx else OPEN], dtype=np.float64)

    # -- planning helpers ------------------------------------------------------------------

    def _is_drawer(self, region: str) -> bool:
        sc = self.scene
        return sc.is_site(region) and bool(sc.task.object_sites_dict[region].joints)

    def _is_pushable(self, obj: str, target: str) -> bool:
        """Plates are too wide and flat to grasp: slide them to table regions."""
        sc = self.scene
        size = sc.extent(obj).size
        return sc.is_site(target) and sc.site_parent(target) is None and size[2] < 0.03 and min(size[:2]) > 0.09

    def _clear_drawer_paths(self, plan: list[Step]) -> list[Step]:
        """Before opening a drawer, move aside what goes into it if the open drawer would cover it."""
        out = []
        for step in plan:
            if step.skill == "open" and self._is_drawer(step.obj):
                for s in plan:
                    if s.skill == "pick_place" and s.target == step.obj and P.blocks_drawer(self.scene, s.obj, step.obj):
                        out.append(Step("clear", s.obj, step.obj))
            out.append(step)
        return out

    def holds(self, goal: Subgoal) -> bool:
        return bool(self.scene.task._eval_predicate(goal.as_bddl()))

    def _step_goals(self, step: Step) -> list[Subgoal]:
        """The goal predicates a step is meant to satisfy."""
        skill_pred = {"open": "open", "close": "close", "turn_on": "turnon", "turn_off": "turnoff", "lift": "up"}
        if step.skill == "clear":
            return []
        if step.skill in skill_pred:
            # also for implicit steps (a drawer opened only to put something in): without a
            # check the skill would be retried on an already open drawer
            return [Subgoal(skill_pred[step.skill], (step.obj,))]
        return [g for g in self.subgoals if g.predicate in ("on", "in") and g.args == (step.obj, step.target)]

    # -- execution ---------------------------------------------------------------------------

    def _run(self) -> Generator[np.ndarray, None, bool]:
        ctx = self._ctx
        for step in self.plan:
            goals = self._step_goals(step)
            if not goals:  # nothing to verify (moving an object aside): one go
                yield from self._guarded(step)
                if self.failed:
                    return False
                continue
            for _ in range(MAX_ATTEMPTS):
                if goals and all(self.holds(g) for g in goals):
                    break
                yield from self._guarded(step)
                if self.failed:
                    return False
                yield from hold(ctx, 3, ctx.grip)  # let the scene settle before checking
            else:
                if goals and not all(self.holds(g) for g in goals):
                    self.failed = True
                    return False
        self.done = bool(self.scene.task._check_success())
        self.failed = not self.done
        return self.done

    def _guarded(self, step: Step) -> Generator[np.ndarray, None, bool]:
        """Run a skill; a goal with no scripted skill yet fails the episode (logged) instead of raising."""
        try:
            return (yield from self._skill(step))
        except NotImplementedError as exc:
            self._ctx.log.append(f"unsupported: {exc}")
            self.failed = True
            return False

    def _skill(self, step: Step) -> Generator[np.ndarray, None, bool]:
        ctx = self._ctx
        if step.skill == "pick_place" and P.is_enclosed(self.scene, step.target):
            return (yield from P.insert(ctx, step.obj, step.target))
        if step.skill == "pick_place":
            return (yield from P.pick_place(ctx, step.obj, step.target))
        if step.skill in ("open", "close") and self._is_drawer(step.obj):
            fn = P.open_drawer if step.skill == "open" else P.close_drawer
            return (yield from fn(ctx, step.obj))
        if step.skill == "close" and not self.scene.is_site(step.obj) and self.scene.object(step.obj).joints:
            return (yield from P.close_door(ctx, step.obj))
        if step.skill == "push":
            return (yield from P.push(ctx, step.obj, step.target))
        if step.skill in ("turn_on", "turn_off"):
            joint = self.scene.object(step.obj).joints[0]
            return (yield from P.turn_knob(ctx, joint, on=step.skill == "turn_on"))
        if step.skill == "clear":
            return (yield from P.clear_drawer_path(ctx, step.obj, step.target))
        if step.skill == "lift":
            return (yield from P.pick(ctx, step.obj))
        raise NotImplementedError(f"no primitive for skill {step.skill!r} yet")


class Perturbation:
    """DART-style perturbations of an expert's demo (Laskey et al., 2017): now and then the hand is
    pushed for a few steps in a random direction on top of the expert's action.

    Only the *executed* action is perturbed; the demo records the expert's own action as the label,
    so the demo shows how the expert brings the hand back from states it alone never visits. A
    policy cloned from unperturbed demos meets such states after its first mistake and has no label
    for them (compounding error). `rate` is the chance per step that a push starts.
    """

    STEPS = 6  # steps one push lasts
    MAGNITUDE = 1.0  # translational action added (the controller's full scale: 5 cm per step)

    def __init__(self, rate: float, seed: int) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"perturbation rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11]))
        self.left = 0
        self.push = np.zeros(7)

    def __call__(self) -> np.ndarray:
        """The offset added to this step's executed action (zeros when no push is on)."""
        if self.left == 0 and self.rate > 0 and self.rng.random() < self.rate:
            direction = self.rng.normal(size=3)
            self.push = np.concatenate([self.MAGNITUDE * direction / np.linalg.norm(direction), np.zeros(4)])
            self.left = self.STEPS
        if self.left == 0:
            return np.zeros(7)
        self.left -= 1
        return self.push


def rollout(env, init_state: int, seed: int, max_steps: int | None = None, perturb: float = 0.0,
            approach: float = APPROACH):
    """One physics-only expert episode from init state `init_state`.

    Returns (success, actions (T, 7), states (T, D)); states[t] is `env.get_state()` just before
    actions[t], as LIBERO datasets store them. With `perturb` > 0 the executed actions are the
    expert's plus `Perturbation(perturb)`'s pushes, and `actions` are still the expert's (labels).
    `approach` is the servo's slow-down distance (`motion.APPROACH`).
    """
    env.reset(seed=int(seed), options={"init_state": int(init_state)})  # fixture placement too: reproducible
    expert = ScriptedExpert(env, seed, approach)
    expert.reset()
    push = Perturbation(perturb, seed)
    max_steps = env.horizon if max_steps is None else int(max_steps)
    actions, states, success = [], [], False
    for _ in range(max_steps):
        states.append(env.get_state())
        action = expert.act()
        actions.append(action)
        executed = np.clip(action + push(), -1.0, 1.0) if perturb > 0 else action
        _, _, terminated, truncated, info = env.step(executed)
        success = bool(info["is_success"])
        if terminated or truncated or expert.failed:
            break
    dim = len(env.get_state())
    return (
        success,
        np.asarray(actions, dtype=np.float64).reshape(-1, 7),
        np.asarray(states, dtype=np.float64).reshape(-1, dim),
    )
