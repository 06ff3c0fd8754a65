"""Wilson intervals, Fisher's exact test and the run-vs-run verdicts."""

import pytest
from scipy.stats import binomtest

from atm_bench.bench.stats import (HELD, IMPROVED, REGRESSED, UNDERPOWERED, Tally, compare_runs,
                                   difference_interval, fisher_exact_test, tallies, verdict, wilson_interval)


def test_wilson_matches_known_values_and_scipy():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # nothing measured: nothing known
    for k, n in [(1, 3), (7, 20), (42, 100), (199, 200)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-3)  # z = 1.96 vs the exact quantile
    assert Tally(42, 100).summary() == "42.0 % [32.8, 51.8] n=100"


def test_fisher_on_a_known_table():
    # The tea-tasting table [[3, 1], [1, 3]]: two-sided p = 34/70.
    assert fisher_exact_test(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert fisher_exact_test(0, 10, 10, 10) == pytest.approx(2 / 184756)  # 2 of C(20, 10) tables as extreme
    assert fisher_exact_test(0, 0, 3, 8) == 1.0


def test_difference_interval_contains_the_difference():
    lo, hi = difference_interval(Tally(20, 100), Tally(30, 100))
    assert lo < 0.10 < hi and -0.03 < lo < 0.0 and 0.2 < hi < 0.25


@pytest.mark.parametrize("a, b, expected", [
    (Tally(20, 100), Tally(80, 100), IMPROVED),
    (Tally(80, 100), Tally(20, 100), REGRESSED),
    (Tally(500, 1000), Tally(510, 1000), HELD),       # B - A lies in [-3.4, +5.4] points
    (Tally(0, 40), Tally(0, 40), HELD),               # B's rate is at most 8.8 %: no 20-point change
    (Tally(1, 10), Tally(3, 10), UNDERPOWERED),       # p = 0.58, but B - A may be anywhere in [-16, +51]
    (Tally(0, 10), Tally(0, 10), UNDERPOWERED),       # either may be 28 %
    (Tally(10, 19), Tally(10, 19), UNDERPOWERED),     # below the 20-episode floor for `held`
    (Tally(0, 0), Tally(5, 10), UNDERPOWERED),        # nothing to compare with
])
def test_verdicts(a, b, expected):
    p = fisher_exact_test(a.successes, a.n, b.successes, b.n)
    assert verdict(a, b, p) == expected


def _records(agent, seed, task, successes, suite="libero_goal", **extra):
    return [{"agent": agent, "suite": suite, "task": task, "seed": seed, "init_state": i, "success": bool(s),
             "protocol": "atm", "preset": "smoke", **extra} for i, s in enumerate(successes)]


def test_tallies_pool_seeds_and_leave_out_errors():
    records = _records("bc", 0, 0, [1, 0]) + _records("bc", 1, 0, [1, 1]) + _records("bc", 1, 0, [0], status="error")
    assert tallies(records, lambda r: (r["agent"], r["task"])) == {("bc", 0): Tally(3, 4)}


def test_compare_runs_pools_seeds_per_task_and_shared_tasks_only():
    a = _records("atm", 0, 0, [1] * 10) + _records("atm", 1, 0, [1] * 10) + _records("atm", 0, 1, [1] * 20) \
        + _records("bc", 0, 0, [0] * 5) + _records("only-a", 0, 0, [1])
    b = _records("atm", 0, 0, [0] * 20) + _records("atm", 0, 1, [0] * 20) + _records("atm", 0, 2, [1] * 50) \
        + _records("bc", 0, 0, [0] * 5)
    atm, bc = compare_runs(a, b)  # agents in both runs only, sorted
    assert atm.agent == "atm" and bc.agent == "bc"
    assert [(t.task, t.a, t.b) for t in atm.tasks] == [(0, Tally(20, 20), Tally(0, 20)), (1, Tally(20, 20), Tally(0, 20)),
                                                       (2, Tally(0, 0), Tally(50, 50))]
    assert atm.tasks[2].p_value is None and atm.tasks[0].p_value < 1e-6
    assert (atm.a, atm.b) == (Tally(40, 40), Tally(0, 40))  # task 2, evaluated by B only, is not pooled
    assert atm.verdict == REGRESSED and bc.verdict == UNDERPOWERED and bc.p_value == 1.0
    assert compare_runs(b, a)[0].verdict == IMPROVED
