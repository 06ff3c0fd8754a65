"""From a LIBERO BDDL goal to an ordered plan of skills.

A LIBERO goal is a conjunction of predicates (`On`, `In`, `Open`, `Close`, `TurnOn`, `TurnOff`,
`Up`). Each becomes one skill; the order matters where skills interact: a drawer must be
opened before something is put in it and closed after, a stove knob is turned before a pot
covers the burner. This module is pure (no simulator), so plans are unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from atm_bench.errors import UserError

PREDICATES = ("on", "in", "open", "close", "turnon", "turnoff", "up")


@dataclass(frozen=True)
class Subgoal:
    """One goal predicate: e.g. Subgoal("on", ("akita_black_bowl_1", "plate_1"))."""

    predicate: str
    args: tuple[str, ...]

    def as_bddl(self) -> list[str]:
        return [self.predicate, *self.args]


@dataclass(frozen=True)
class Step:
    """One skill of a plan. `skill` is pick_place, push, open, close, turn_on, turn_off or lift."""

    skill: str
    obj: str
    target: str | None = None


def parse_goal(goal_state: Iterable[Sequence[str]]) -> list[Subgoal]:
    """LIBERO's parsed `goal_state` (a list of [predicate, *args]) -> subgoals, lower-cased."""
    out = []
    for atom in goal_state:
        if not atom or isinstance(atom, str):
            raise UserError(f"malformed BDDL goal atom {atom!r}; expected [predicate, arg, ...]")
        name = str(atom[0]).lower()
        if name == "and":
            out.extend(parse_goal(atom[1:]))
            continue
        if name not in PREDICATES:
            raise UserError(f"BDDL goal predicate {atom[0]!r} has no scripted skill; supported: {', '.join(PREDICATES)}")
        arity = 1 if name in ("open", "close", "turnon", "turnoff", "up") else 2
        if len(atom) != 1 + arity:
            raise UserError(f"BDDL goal atom {list(atom)!r} should have {arity} argument(s)")
        out.append(Subgoal(name, tuple(str(a) for a in atom[1:])))
    return out


def make_plan(
    subgoals: Sequence[Subgoal],
    is_drawer: Callable[[str], bool] = lambda name: False,
    is_pushable: Callable[[str, str], bool] = lambda obj, target: False,
) -> list[Step]:
    """Order subgoals into skills.

    is_drawer(region): the region is inside an articulated container (a drawer's region, the
    microwave) that must be open to put something in and is closed afterwards if asked.
    is_pushable(obj, target): slide the object along the table instead of lifting it (a plate).
    A drawer the plan opens is closed last; one it does not open (open to begin with) first;
    anything else (the microwave's door) last.
    """
    opens, turns, places, closes = [], [], [], []
    opened: set[str] = set()
    for goal in subgoals:
        p, args = goal.predicate, goal.args
        if p == "open":
            opens.append(Step("open", args[0]))
            opened.add(args[0])
        elif p == "close":
            closes.append(Step("close", args[0]))
        elif p in ("turnon", "turnoff"):
            turns.append(Step("turn_on" if p == "turnon" else "turn_off", args[0]))
        elif p == "up":
            places.append(Step("lift", args[0]))
        else:
            obj, target = args
            if p == "in" and is_drawer(target) and target not in opened:
                opens.append(Step("open", target))
                opened.add(target)
            places.append(Step("push" if is_pushable(obj, target) else "pick_place", obj, target))
    # closing what the plan does not open itself goes first: an open drawer above it would
    # hang over its handle (close the bottom drawer, open the top one)
    early = [s for s in closes if is_drawer(s.obj) and s.obj not in opened]
    late = [s for s in closes if s not in early]
    return early + opens + turns + _stack_order(places) + late


def _stack_order(places: list[Step]) -> list[Step]:
    """A stack goal (A on B, B in tray) moves B first, then A onto B, so B never moves loaded."""
    moved_targets = {s.target for s in places}
    first = [s for s in places if s.obj in moved_targets]
    rest = [s for s in places if s.obj not in moved_targets]
    return first + rest
