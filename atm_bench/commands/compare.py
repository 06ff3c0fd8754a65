"""`atm-bench compare RUN_A RUN_B`: has an agent improved, regressed or held between two runs?

Run A is the baseline, run B the candidate. The exit status is 1 when any agent regressed, so a
CI job can gate on it; `bench.stats.verdict` defines the verdicts.
"""

from __future__ import annotations


def register(sub) -> None:
    compare = sub.add_parser("compare", help="compare two runs per agent and task (Fisher's exact test); "
                                             "exit status 1 when an agent regressed")
    compare.add_argument("run_a", metavar="RUN_A", help="baseline run directory")
    compare.add_argument("run_b", metavar="RUN_B", help="candidate run directory")
    compare.add_argument("--alpha", type=float, default=None, help="significance level (default: 0.05)")
    compare.add_argument("--agents", default=None,
                         help="comma-separated agents to compare (default: all in both runs); A_AGENT:B_AGENT compares "
                              "run A's A_AGENT with run B's B_AGENT, e.g. `compare RUN RUN --agents bc:atm` tests ATM "
                              "against BC within one run")
    compare.set_defaults(handler=_compare)


def _compare(args) -> int:
    from atm_bench.bench.stats import ALPHA, REGRESSED, compare_runs, pair_label, paired_records
    from atm_bench.errors import UserError
    from atm_bench.tables import load_runs, unfinished_lines

    alpha = ALPHA if args.alpha is None else args.alpha  # the default lives in bench.stats (scipy: not at --help)
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: a significance level lies between 0 and 1, e.g. 0.05")
    run_a, run_b = load_runs([args.run_a, args.run_b])
    for line in unfinished_lines([run_a, run_b]):
        print(f"note: {line}")
    horizons = [sorted({r.get("horizon") for r in run.records}, key=str) for run in (run_a, run_b)]
    if horizons[0] != horizons[1]:
        print(f"note: the runs capped episodes at different horizons ({run_a.path.name}: {horizons[0]}, "
              f"{run_b.path.name}: {horizons[1]}); a success after the shorter one counts only in the other run")
    pairs = [_pair(a) for a in args.agents.split(",") if a.strip()] if args.agents else None
    records_a, records_b = paired_records(run_a.records, run_b.records, pairs) if pairs else (run_a.records, run_b.records)
    comparisons = compare_runs(records_a, records_b, alpha=alpha)
    missing = [pair_label(*p) for p in pairs or () if pair_label(*p) not in {c.agent for c in comparisons}]
    if missing:
        raise UserError(f"agent(s) {', '.join(missing)} not evaluated in both {run_a.path} and {run_b.path} "
                        "(A_AGENT:B_AGENT needs A_AGENT in RUN_A and B_AGENT in RUN_B)")
    if not comparisons:
        raise UserError(f"no agent evaluated in both {run_a.path} and {run_b.path}")
    for comparison in comparisons:
        print(_report(comparison, run_a.path.name, run_b.path.name))
    return 1 if any(c.verdict == REGRESSED for c in comparisons) else 0


def _pair(entry: str) -> tuple[str, str]:
    """"bc" -> (bc, bc); "bc:atm" -> (bc, atm): run A's agent and run B's."""
    names = [n.strip() for n in entry.split(":")]
    if len(names) == 1:
        return names[0], names[0]
    if len(names) != 2 or not all(names):
        from atm_bench.errors import UserError

        raise UserError(f"--agents {entry!r}: give an agent (bc) or run A's and run B's agent as A_AGENT:B_AGENT (bc:atm)")
    return names[0], names[1]


def _report(comparison, name_a: str, name_b: str) -> str:
    """Per task A and B (successes/n, rate, Wilson interval) and the unadjusted p-value, then the
    pooled row the verdict rests on, then the verdict. A Markdown table: it reads the same in a
    terminal, a CI log and a job summary, at any width."""
    from atm_bench.bench.stats import format_p
    from atm_bench.tables import SUITE_TITLES, render

    headers = ["suite", "task", "A succ/n", "A rate", "A 95 % CI", "B succ/n", "B rate", "B 95 % CI", "Fisher p"]
    rows = [[SUITE_TITLES.get(t.suite, t.suite), str(t.task), *_cells(t.a), *_cells(t.b),
             format_p(t.p_value) if t.p_value is not None else "-"] for t in comparison.tasks]
    rows.append(["pooled", "shared", *_cells(comparison.a), *_cells(comparison.b), format_p(comparison.p_value)])
    lo, hi = comparison.difference
    change = 100 * (comparison.b.rate - comparison.a.rate)
    agent_a, _, agent_b = comparison.agent.partition(":")
    sides = f"A = {name_a}, B = {name_b}" if not agent_b else f"A = {agent_a} in {name_a}, B = {agent_b} in {name_b}"
    return (f"{comparison.agent}: {sides}\n{render(headers, rows, 'md')}"
            f"verdict: {comparison.verdict} (B - A: {change:+.1f} points, 95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}])\n")


def _cells(tally) -> list[str]:
    if not tally.n:
        return ["-", "-", "-"]
    return [f"{tally.successes}/{tally.n}", tally.percent(), tally.interval_text()]
