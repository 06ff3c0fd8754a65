"""Statistics for success rates: Wilson intervals, Fisher's exact test and run-vs-run verdicts.

Why these: success is a count of Bernoulli episodes, often few and often near 0 % or 100 %,
where the normal-approximation interval (p +- 1.96 sqrt(p(1-p)/n)) collapses to a point and
chi-squared tests are invalid. The Wilson score interval keeps its coverage there, and Fisher's
exact test is exact at any n.

Pooling treats every episode as an independent trial of the agents as trained, so it measures
evaluation noise, not the spread between training seeds; the tables show that spread beside the
pooled figures (mean +- std over seeds). Records marked `status: "error"` (an environment that
crashed) are neither successes nor failures and are left out everywhere.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable

from scipy.stats import fisher_exact

ALPHA = 0.05  # significance level of every test here
MARGIN = 0.20  # a difference in success rate (20 percentage points) that `held` must rule out
MIN_EPISODES = 20  # fewer pooled episodes per run never give `held`

IMPROVED, REGRESSED, HELD, UNDERPOWERED = "improved", "regressed", "held", "underpowered"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95 % for z = 1.96), as fractions.
    With no episodes nothing is known: (0, 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # Exact ends at 0 and n successes, where rounding could leave a hair off 0 or 1.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def fisher_exact_test(a_succ: int, a_n: int, b_succ: int, b_n: int) -> float:
    """Two-sided p-value of Fisher's exact test that A and B succeed equally often."""
    table = [[a_succ, a_n - a_succ], [b_succ, b_n - b_succ]]
    return float(fisher_exact(table, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Tally:
    """Successes out of n episodes."""

    successes: int = 0
    n: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.successes + other.successes, self.n + other.n)

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.n)

    def percent(self) -> str:
        return f"{100 * self.rate:.1f} %"

    def interval_text(self) -> str:
        lo, hi = self.interval
        return f"[{100 * lo:.1f}, {100 * hi:.1f}]"

    def summary(self) -> str:
        """E.g. "42.0 % [33.1, 51.4] n=100"."""
        return f"{self.percent()} {self.interval_text()} n={self.n}"


def tallies(records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable]) -> dict[Hashable, Tally]:
    """Episodes pooled by `key(record)` (over every seed), error records left out."""
    out: dict[Hashable, Tally] = defaultdict(Tally)
    for r in records:
        if r.get("status") != "error":
            out[key(r)] += Tally(int(bool(r["success"])), 1)
    return dict(out)


def difference_interval(a: Tally, b: Tally) -> tuple[float, float]:
    """95 % interval of rate(B) - rate(A): Newcombe's hybrid score interval, built from the two
    Wilson intervals, so that it behaves at 0 % and 100 % as they do."""
    (la, ua), (lb, ub), d = a.interval, b.interval, b.rate - a.rate
    return (d - math.hypot(b.rate - lb, ua - a.rate), d + math.hypot(ub - b.rate, a.rate - la))


def fisher(a: Tally, b: Tally) -> float:
    return fisher_exact_test(a.successes, a.n, b.successes, b.n)


def format_p(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


@dataclass(frozen=True)
class TaskComparison:
    """One task's episodes in each run (over all seeds); `p_value` is None when a run lacks it."""

    suite: str
    task: int
    a: Tally
    b: Tally
    p_value: float | None


@dataclass(frozen=True)
class AgentComparison:
    """An agent in run A and run B: per task, then pooled over the tasks both runs evaluated."""

    agent: str
    tasks: list[TaskComparison]
    a: Tally
    b: Tally
    p_value: float
    difference: tuple[float, float]  # 95 % interval of rate(B) - rate(A)
    verdict: str


def verdict(a: Tally, b: Tally, p_value: float, alpha: float = ALPHA, margin: float = MARGIN,
            min_episodes: int = MIN_EPISODES) -> str:
    """Run B (the candidate) against run A (the baseline), from episodes pooled over tasks:

    - `improved` / `regressed`: Fisher's exact test rejects equal rates (p < alpha); the
      direction is that of B's rate against A's.
    - `held`: not significant, and the data rule out a change of `margin` (20 points) or more
      either way: the 95 % interval of rate(B) - rate(A) lies strictly inside (-margin, margin),
      with at least `min_episodes` episodes in each run.
    - `underpowered`: neither: too few episodes to tell "no change" from "a change the test
      could not see" (e.g. 1/10 vs 3/10: p = 0.58, yet the interval runs from -16 to +51 points).
    """
    if a.n and b.n and p_value < alpha:
        return IMPROVED if b.rate > a.rate else REGRESSED
    lo, hi = difference_interval(a, b)
    if min(a.n, b.n) >= min_episodes and -margin < lo and hi < margin:
        return HELD
    return UNDERPOWERED


def compare_runs(records_a: Iterable[dict[str, Any]], records_b: Iterable[dict[str, Any]], alpha: float = ALPHA,
                 margin: float = MARGIN, min_episodes: int = MIN_EPISODES) -> list[AgentComparison]:
    """Per agent present in both runs (sorted by name): each (suite, task) with its successes
    pooled over all seeds of each run and a Fisher test (unadjusted, for reading), then the
    pooled test over the tasks both runs evaluated, which alone gives the `verdict`. Pooling only
    shared tasks keeps a run that evaluated more (or harder) tasks from shifting the rate."""
    by_task_a = tallies(records_a, lambda r: (r["agent"], r["suite"], int(r["task"])))
    by_task_b = tallies(records_b, lambda r: (r["agent"], r["suite"], int(r["task"])))
    agents = sorted({k[0] for k in by_task_a} & {k[0] for k in by_task_b})
    return [_compare_agent(agent, by_task_a, by_task_b, alpha, margin, min_episodes) for agent in agents]


def pair_label(agent_a: str, agent_b: str) -> str:
    """How a comparison of run A's `agent_a` with run B's `agent_b` is named: the agent alone when
    they are the same, else "A_AGENT:B_AGENT" (the form `compare --agents` takes)."""
    return agent_a if agent_a == agent_b else f"{agent_a}:{agent_b}"


def paired_records(records_a: Iterable[dict[str, Any]], records_b: Iterable[dict[str, Any]],
                   pairs: Iterable[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For each (agent of A, agent of B) pair, their records under one label (`pair_label`), so that
    `compare_runs` tests one agent against another by the same per-task and pooled tests: ATM
    against BC in one run (both sides the same run), or a new agent against an old one."""
    pairs = list(pairs)
    records_a, records_b = list(records_a), list(records_b)

    def side(records: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
        return [{**r, "agent": pair_label(*pair)} for pair in pairs for r in records if r["agent"] == pair[index]]

    return side(records_a, 0), side(records_b, 1)


def _compare_agent(agent: str, by_task_a: dict, by_task_b: dict, alpha: float, margin: float,
                   min_episodes: int) -> AgentComparison:
    keys = sorted(k for k in by_task_a.keys() | by_task_b.keys() if k[0] == agent)
    tasks, pooled_a, pooled_b = [], Tally(), Tally()
    for key in keys:
        a, b = by_task_a.get(key, Tally()), by_task_b.get(key, Tally())
        shared = a.n > 0 and b.n > 0
        tasks.append(TaskComparison(key[1], key[2], a, b, fisher(a, b) if shared else None))
        if shared:
            pooled_a, pooled_b = pooled_a + a, pooled_b + b
    p_value = fisher(pooled_a, pooled_b)
    return AgentComparison(agent, tasks, pooled_a, pooled_b, p_value, difference_interval(pooled_a, pooled_b),
                           verdict(pooled_a, pooled_b, p_value, alpha, margin, min_episodes))
