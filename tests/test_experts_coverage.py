"""The expert's coverage table and `atm-bench run`'s one line on the LIBERO-90 tasks it leaves out."""

from __future__ import annotations

import argparse

from atm_bench.envs.libero.suites import get_suite
from atm_bench.experts.coverage import UNSOLVED, unsolved


def _args(suite: str, tasks: str | None = None, preset: str = "quick") -> argparse.Namespace:
    return argparse.Namespace(suite=get_suite(suite), tasks=tasks, preset=preset)


def test_every_unsolved_task_is_a_real_task_with_a_reason():
    for suite, table in UNSOLVED.items():
        names = {t.name for t in get_suite(suite).tasks}
        assert table, suite
        for name, reason in table.items():
            assert name in names, f"{name} is not a {suite} task"
            assert reason.strip()
    assert unsolved("libero_goal") == {}


def test_run_leaves_out_unsolved_libero_90_tasks_in_one_line(capsys):
    from atm_bench.commands.run import _expert_tasks

    suite = get_suite("libero-90")
    gaps = unsolved("libero_90")
    tasks = _expert_tasks(_args("libero-90"))
    left = [t.index for t in suite.tasks if t.name in gaps]
    assert left and tasks == tuple(t for t in range(90) if t not in left)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and f"leaving out {len(left)} of 90 tasks" in out
    for t in left:
        assert suite.task(t).name in out and gaps[suite.task(t).name] in out


def test_run_keeps_asked_tasks_and_names_the_unsolved_ones(capsys):
    from atm_bench.commands.run import _expert_tasks

    suite = get_suite("libero-90")
    bad = next(t.index for t in suite.tasks if t.name in unsolved("libero_90"))
    assert _expert_tasks(_args("libero-90", tasks=f"0,{bad}")) == (0, bad)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and suite.task(bad).name in out
    assert _expert_tasks(_args("libero-90", tasks="0")) == (0,)
    assert _expert_tasks(_args("libero-goal")) is None
    assert capsys.readouterr().out == ""
