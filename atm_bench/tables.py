"""The comparison, compute and ablation tables, regenerated from stored results only.

Inputs are run directories written by `atm-bench run` (or `atm-bench eval`): episode records
(`*.jsonl`), `flops.json` (agent -> counted cost per env step), `config.json` (preset,
protocol, labelled demos, both stages' point source, a free-form `ablation` label; `atm-bench
eval` writes the checkpoint's preset as trained) and
`throughput.json` (evaluation env steps/s, vector loop vs a serial loop, as measured in the run).
Outputs are Markdown, CSV and LaTeX (tabulate) and a grouped bar plot like the paper's Fig. 4b.
Output is a pure function of the inputs (sorted, no timestamps, fixed plot metadata), so
regenerating gives byte-identical files.

Conventions: an agent's success on a suite for one seed is the mean over all its episodes of
all tasks; tables show mean +- std over seeds (population std, ddof=0) and, beside it, the rate
pooled over every episode of every seed with its 95 % Wilson interval and n (`bench.stats`), so
that a reader sees how many episodes a figure rests on. Published numbers are printed beside
ours in rows marked "(paper)", never mixed into our statistics. An agent-seed whose evaluation
has not finished (fewer episodes than config.json plans) is left out of every table and listed
below the success table, so that a table made mid-run never passes off a partial seed. Below the
Markdown success table, each learned agent is tested (Fisher's exact test on pooled episodes) against the best of the
cheap reference agents in the runs: an agent that cannot beat them has not learned much; and where
ATM and BC both ran, the paper's claim ATM > BC gets `compare`'s verdict.
"""

from __future__ import annotations

import csv
import io
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from atm_bench.agents.base import BUILTIN_AGENTS, builtin_names
from atm_bench.bench.results import ResultsStore, is_superseded_file, record_key
from atm_bench.bench.stats import (ALPHA, HELD, IMPROVED, REGRESSED, Tally, compare_runs, fisher, format_p,
                                   paired_records, tallies)
from atm_bench.envs.libero.suites import SUITES
from atm_bench.errors import UserError
from atm_bench.io import read_json, write_text_atomic

SUITE_ORDER = SUITES  # the suite registry's order; a suite outside it (a real robot's) follows
SUITE_TITLES = {"libero_spatial": "Spatial", "libero_object": "Object", "libero_goal": "Goal",
                "libero_10": "Long", "libero_90": "LIBERO-90"}
# Titles from the agent registry, plus the paper's row we never run (BC on every demo).
AGENT_TITLES = {**{e.name: e.title for e in BUILTIN_AGENTS}, "bc-full": "BC-Full-Trainset"}
# Cheap agents (an MLP on proprioception + instruction, nearest neighbour over thumbnails +
# proprioception) that a learned agent must beat before its success means anything.
REFERENCE_AGENTS = builtin_names("reference")
# The paper's table order: references, BC variants, the baselines, ATM last.
AGENT_ORDER = (*REFERENCE_AGENTS, "bc-full", "bc", *builtin_names("baseline"), "atm")
NOT_LEARNED = REFERENCE_AGENTS + ("expert",)  # agents not held to the reference agents
TASK_STEPS = 600  # the paper's compute table counts one 600-step task

# The paper's Table V (20 % of demos), success %, mean +- std over 3 seeds; None = not given.
PAPER_SUCCESS: dict[str, dict[str, tuple[float, float | None] | None]] = {
    "bc-full": {"libero_spatial": (71.83, 3.70), "libero_object": (71.00, 7.97), "libero_goal": (76.33, 1.31), "libero_10": (24.17, 2.59)},
    "bc": {"libero_spatial": (39.00, 8.20), "libero_object": (51.83, 13.54), "libero_goal": (42.50, 4.95), "libero_10": (16.67, 3.66)},
    "r3m": {"libero_spatial": (49.17, 3.79), "libero_object": (52.83, 2.25), "libero_goal": (5.33, 1.43), "libero_10": (9.17, 2.66)},
    "vpt": {"libero_spatial": (37.83, 4.29), "libero_object": (19.50, 0.82), "libero_goal": (3.33, 2.36), "libero_10": (3.83, 1.65)},
    "unipi": {"libero_spatial": None, "libero_object": (59.83, 3.01), "libero_goal": (11.83, 2.02), "libero_10": (5.83, 2.08)},
    "unipi-replan": {"libero_object": (31.00, None), "libero_goal": (3.00, None)},
    "atm": {"libero_spatial": (68.50, 1.78), "libero_object": (68.00, 6.18), "libero_goal": (77.83, 0.82), "libero_10": (39.33, 15.80)},
}
# The paper's Table IV: TFLOPs for one 600-step task.
PAPER_TFLOPS = {"atm": 1.56, "unipi": 39.29, "unipi-replan": 2946.75}


@dataclass
class Run:
    """One run directory's records, costs and configuration."""

    path: Path
    records: list[dict[str, Any]]
    flops: dict[str, dict[str, float]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    # (agent, suite, seed) -> (episodes recorded, episodes planned): evaluations still running,
    # whose records are left out of `records`.
    unfinished: dict[tuple[str, str, int], tuple[int, int]] = field(default_factory=dict)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """The runs' records, costs and configuration. An agent-seed with fewer episodes than the run
    plans (its config.json: `episodes_per_task` x `tasks`) is still being evaluated: its records
    are left out and listed in `Run.unfinished`, because runs evaluate task by task and a partial
    seed would enter the mean over seeds with only its first tasks' rate."""
    runs = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UserError(f"{path}: not a run directory (expected the --out directory of `atm-bench run`)")
        records = _episodes(path)
        if not records:
            raise UserError(f"{path}: no episode records (*.jsonl) found; run `atm-bench run` or `atm-bench eval` first")
        flops = read_json(path / "flops.json")
        config = read_json(path / "config.json")
        unfinished = unfinished_seeds(records, config)
        records = [r for r in records if (r["agent"], r["suite"], int(r["seed"])) not in unfinished]
        if not records:
            (agent, suite, seed), (n, planned) = next(iter(unfinished.items()))
            raise UserError(f"{path}: no agent-seed has finished its evaluation yet ({agent} seed {seed}: {n} of "
                            f"{planned} episodes); make the tables when one has")
        runs.append(Run(path, records, flops, config, read_json(path / "throughput.json"),
                        read_json(path / "timing.json"), unfinished))
    return runs


def _episodes(path: Path) -> list[dict[str, Any]]:
    """Every episode recorded under `path` once: its results.jsonl first, then the other files
    (shards, `atm-bench eval` directories inside it). An episode found again in a later file (a
    shard merged but not yet deleted, or a stale copy) is counted once, with one warning line,
    since counting it twice would raise n and tilt its agent-seed's rate."""
    records, seen, repeated = [], set(), Counter()
    files = sorted(path.rglob("*.jsonl"), key=lambda f: (f != path / "results.jsonl", f))
    for jsonl in files:
        if is_superseded_file(jsonl):  # episodes of an agent since retrained
            continue
        for record in ResultsStore(jsonl).records():
            if record_key(record) in seen:
                repeated[jsonl.relative_to(path)] += 1
                continue
            seen.add(record_key(record))
            records.append(record)
    if repeated:
        where = ", ".join(f"{name} ({n})" for name, n in sorted(repeated.items()))
        print(f"atm-bench: warning: {path}: {sum(repeated.values())} episode(s) recorded again in {where}: "
              "each counted once", file=sys.stderr)
    return records


def unfinished_seeds(records: Iterable[dict[str, Any]], config: dict[str, Any]) -> dict[tuple[str, str, int], tuple[int, int]]:
    """(agent, suite, seed) -> (recorded, planned) for each agent-seed with fewer episodes (errors
    included) than `config` plans; none where the config does not say (an `atm-bench eval`
    directory from before it wrote one)."""
    if "episodes_per_task" not in config or "tasks" not in config:
        return {}
    planned = int(config["episodes_per_task"]) * len(config["tasks"])
    counts: dict[tuple[str, str, int], int] = defaultdict(int)
    for r in records:
        counts[(r["agent"], r["suite"], int(r["seed"]))] += 1
    return {key: (n, planned) for key, n in sorted(counts.items()) if n < planned}


def unfinished_lines(runs: Iterable[Run]) -> list[str]:
    """One sentence per agent-seed left out because its evaluation has not finished."""
    return [f"{_title(agent)} seed {seed} on {SUITE_TITLES.get(suite, suite)} in {run.path.name} is left out: "
            f"still being evaluated ({n} of {planned} episodes recorded)."
            for run in runs for (agent, suite, seed), (n, planned) in run.unfinished.items()]


def _base(agent: str) -> str:
    """The registry name of a table's agent: "atm" for "atm [robot]" (a variant, `variant_records`)."""
    return agent.split(" [", 1)[0]


def _agent_order(agents: Iterable[str]) -> list[str]:
    """The paper's order of the registry names, others after them; an agent's variants together."""
    def key(agent: str) -> tuple:
        base = _base(agent)
        return (AGENT_ORDER.index(base), agent) if base in AGENT_ORDER else (len(AGENT_ORDER), agent)

    return sorted(set(agents), key=key)


def _title(agent: str) -> str:
    base, sep, variant = agent.partition(" [")
    return AGENT_TITLES.get(base, base) + sep + variant


def _fmt(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def per_seed_success(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[int, float]]:
    """(agent, suite) -> seed -> success % over all that seed's episodes. Episodes recorded as
    errors (an env crashed twice) are neither successes nor failures: they are left out here and
    counted by `error_counts`."""
    groups: dict[tuple[str, str, int], list[bool]] = defaultdict(list)
    for r in records:
        if r.get("status") == "error":
            continue
        groups[(r["agent"], r["suite"], int(r["seed"]))].append(bool(r["success"]))
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for (agent, suite, seed), successes in groups.items():
        out[(agent, suite)][seed] = 100.0 * float(np.mean(successes))
    return out


def error_counts(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        if r.get("status") == "error":
            counts[r["agent"]] += 1
    return dict(counts)


def _suite_key(suite: str) -> int:
    return SUITE_ORDER.index(suite) if suite in SUITE_ORDER else len(SUITE_ORDER)


def _suites(success) -> list[str]:
    """The suites with results, in the registry's order, any other after them (never dropped)."""
    return sorted({k[1] for k in success}, key=lambda s: (_suite_key(s), s))


def comparison_rows(records: list[dict[str, Any]], with_paper: bool = True) -> tuple[list[str], list[list[str]]]:
    """Rows: each agent measured here, per suite mean ± std over seeds and beside it the pooled
    rate over all episodes with its Wilson interval and n; the number of seeds and their ids;
    then the paper's rows. An "errors" column appears when some episodes could not be run
    (environment crashes)."""
    success = per_seed_success(records)
    pooled = tallies(records, lambda r: (r["agent"], r["suite"]))
    errors = error_counts(records)
    suites = _suites(success)
    agents = _agent_order({k[0] for k in success} | set(errors))
    titles = [SUITE_TITLES.get(s, s) for s in suites]
    headers = ["method", "source", *(h for t in titles for h in (t, f"{t} pooled, 95 % CI")),
               "average", "seeds", "seed ids"] + (["errors"] if errors else [])
    rows = []
    for agent in agents:
        cells, means, seeds, seed_ids = [], [], set(), set()
        for suite in suites:
            values = success.get((agent, suite))
            if not values:
                cells += ["-", "-"]
                continue
            vals = np.array([values[s] for s in sorted(values)])
            seeds.add(len(vals))
            seed_ids |= set(values)
            means.append(vals.mean())
            cells += [_fmt(vals.mean(), vals.std()), pooled[(agent, suite)].summary()]
        average = f"{np.mean(means):.2f}" if len(means) == len(suites) else "-"
        rows.append([_title(agent), "ours", *cells, average, "/".join(map(str, sorted(seeds))),
                     ",".join(map(str, sorted(seed_ids))) or "-"] + ([str(errors.get(agent, 0))] if errors else []))
    if with_paper:
        for agent in dict.fromkeys(_base(a) for a in agents):  # once per agent, whatever its variants
            published = PAPER_SUCCESS.get(agent)
            if not published:
                continue
            cells = []
            for suite in suites:
                value = published.get(suite)
                cells += [_fmt(*value) if value else "-", "-"]
            rows.append([_title(agent), "paper", *cells, "-", "3" if agent != "unipi-replan" else "1", "-"]
                        + (["-"] if errors else []))
    return headers, rows


def per_task_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Agent x task: successes out of n episodes pooled over seeds, the rate and its Wilson
    interval; a suite's mean hides the tasks an agent never solves."""
    counts = tallies(records, lambda r: (r["agent"], r["suite"], int(r["task"])))
    names: dict[tuple[str, int], str] = {}
    for r in records:
        names.setdefault((r["suite"], int(r["task"])), r.get("task_name", ""))
    order = {agent: i for i, agent in enumerate(_agent_order({k[0] for k in counts}))}
    headers = ["method", "suite", "task", "name", "successes", "n", "success %", "95 % CI"]
    rows = []
    for agent, suite, task in sorted(counts, key=lambda k: (order[k[0]], _suite_key(k[1]), k[1], k[2])):
        tally = counts[(agent, suite, task)]
        rows.append([_title(agent), SUITE_TITLES.get(suite, suite), str(task), names[(suite, task)],
                     str(tally.successes), str(tally.n), f"{100 * tally.rate:.1f}", tally.interval_text()])
    return headers, rows


def reference_lines(records: list[dict[str, Any]], alpha: float = ALPHA) -> list[str]:
    """Per learned agent and suite, one sentence: does it beat the best reference agent present
    (the highest pooled rate), by Fisher's exact test on pooled episodes? None without one."""
    pooled = tallies(records, lambda r: (r["agent"], r["suite"]))
    lines = []
    for suite in sorted({k[1] for k in pooled}, key=lambda s: (_suite_key(s), s)):
        present = {agent for agent, s in pooled if s == suite}
        references = [a for a in _agent_order(present) if _base(a) in REFERENCE_AGENTS]
        if not references:
            continue
        best = max(references, key=lambda a: pooled[(a, suite)].rate)  # the first listed on ties
        for agent in _agent_order(a for a in present if _base(a) not in NOT_LEARNED):
            lines.append(_versus_reference(agent, suite, pooled[(agent, suite)], best, pooled[(best, suite)], alpha))
    return lines


def _versus_reference(agent: str, suite: str, ours: Tally, best: str, reference: Tally, alpha: float) -> str:
    p_value = fisher(ours, reference)
    if p_value >= alpha:
        outcome = "does not differ significantly from"
    else:
        outcome = "beats" if ours.rate > reference.rate else "is beaten by"
    return (f"{_title(agent)} on {SUITE_TITLES.get(suite, suite)} {outcome} the best reference agent, {_title(best)}: "
            f"{ours.summary()} vs {reference.summary()}, Fisher {format_p(p_value)} (alpha {alpha:g}).")


CLAIM_OUTCOMES = {IMPROVED: "holds: ATM beats BC", REGRESSED: "is reversed: BC beats ATM",
                  HELD: "is not shown: no significant difference, and the data rule out one of 20 points either way"}


def claim_lines(records: list[dict[str, Any]], alpha: float = ALPHA) -> list[str]:
    """Per suite holding both ATM and BC, one sentence on the paper's central claim (ATM > BC): the
    comparison `compare RUN RUN --agents bc:atm` makes (`compare_runs` on the paired records), so
    the default run's table answers the question the benchmark exists for."""
    lines = []
    for suite in sorted({r["suite"] for r in records}, key=lambda s: (_suite_key(s), s)):
        in_suite = [r for r in records if r["suite"] == suite]
        present = _agent_order({r["agent"] for r in in_suite})
        bcs = [a for a in present if _base(a) == "bc"]
        if len(bcs) != 1:  # no BC, or BC variants: no one BC to hold ATM to
            continue
        for name in (a for a in present if _base(a) == "atm"):  # each ATM variant of an ablation
            c = compare_runs(*paired_records(in_suite, in_suite, [(bcs[0], name)]), alpha=alpha)[0]
            lo, hi = c.difference
            lines.append(f"The paper's claim {_title(name)} > BC on {SUITE_TITLES.get(suite, suite)} "
                         f"{CLAIM_OUTCOMES.get(c.verdict, 'is untested: too few episodes to tell')}: ATM {c.b.summary()} "
                         f"vs BC {c.a.summary()}, Fisher {format_p(c.p_value)}, ATM - BC "
                         f"{100 * (c.b.rate - c.a.rate):+.1f} points, 95 % CI [{100 * lo:+.1f}, {100 * hi:+.1f}] "
                         f"(verdict {c.verdict}).")
    return lines


def compute_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """TFLOPs per 600-step task: the paper's convention (multiply-accumulates of the planning
    model per step: ATM's track transformer for one view, UniPi's video model; 0 for agents
    without a planner, as `benchmarks/compute_table.py` counts them; "-" for an agent that does
    not report `paper_convention_macs`) and the full cost (2 x MACs of everything an agent runs
    per step), with the paper's Table IV beside."""
    costs: dict[str, dict[str, float]] = {}
    for run in runs:
        for agent, cost in run.flops.items():
            costs.setdefault(agent, cost)
    headers = ["method", "paper convention TFLOPs/task", "full TFLOPs/task", "paper Table IV TFLOPs/task", "preset"]
    rows = []
    preset = {agent: run.config.get("preset", "?") for run in runs for agent in run.flops}
    for agent in _agent_order(costs):
        cost = costs[agent]
        convention = cost.get("paper_convention_macs")
        full = cost.get("flops", 2 * cost["macs"])
        paper = PAPER_TFLOPS.get(agent)
        rows.append([_title(agent), f"{convention * TASK_STEPS / 1e12:.3f}" if convention is not None else "-",
                     f"{full * TASK_STEPS / 1e12:.3f}",
                     f"{paper:.2f}" if paper is not None else "-", preset.get(agent, "?")])
    return headers, rows


def throughput_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]] | None:
    """Evaluation throughput as each run measured it: per agent and seed the vector loop's env
    steps/s (all envs together), the same agent's serial loop (one env) and their ratio."""
    headers = ["method", "seed", "envs", "episodes", "env steps", "vector steps/s", "serial steps/s",
               "speed-up", "preset"]
    rows = []
    for run in runs:
        agents = run.throughput.get("agents", {})
        for agent in _agent_order(agents):
            entry = agents[agent]
            serial = entry.get("serial", {}).get("steps_per_second")
            for seed in sorted(entry.get("seeds", {}), key=int):
                v = entry["seeds"][seed]
                rate = v["steps_per_second"]
                rows.append([_title(agent), seed, str(v["n_envs"]), str(v["episodes"]), str(v["env_steps"]),
                             f"{rate:.1f}", f"{serial:.1f}" if serial else "-",
                             f"{rate / serial:.2f}x" if serial else "-", str(run.config.get("preset", "?"))])
    return (headers, rows) if rows else None


def timing_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]] | None:
    """Wall time of each run by stage (`timing.json`; a stage resumed over several invocations
    counts all of them): the shared stages, then per agent its training and evaluation summed
    over seeds, and the total. The `tables` stage is left out: it writes this table, so the
    table cannot hold its duration, and regenerating it later must give the same bytes."""
    headers = ["run", "stage", "seeds", "seconds", "hours", "share"]
    rows = []
    for run in runs:
        groups: dict[tuple[str, str], list[float]] = defaultdict(list)
        for stage, seconds in run.timing.items():
            kind, _, rest = stage.partition("/")
            if kind == "tables":
                continue
            agent = rest.split("/")[0] if rest else ""
            groups[(kind, agent)].append(float(seconds))
        total = sum(sum(v) for v in groups.values())
        order = {"data": 0, "tracks": 1, "stage1_track_model": 2, "train": 3, "eval": 4, "throughput": 5}
        agents = _agent_order({agent for _, agent in groups if agent})
        for (kind, agent), values in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9),
                                                                            agents.index(kv[0][1]) if kv[0][1] else -1)):
            name = f"{kind} {_title(agent)}" if agent else kind
            seconds = sum(values)
            rows.append([run.path.name, name, str(len(values)) if agent and kind != "throughput" else "",
                         f"{seconds:.0f}", f"{seconds / 3600:.2f}", f"{100 * seconds / total:.1f} %" if total else "-"])
        if groups:
            rows.append([run.path.name, "total", "", f"{total:.0f}", f"{total / 3600:.2f}", "100.0 %"])
    return (headers, rows) if rows else None


def _point_source(config: dict[str, Any]) -> str:
    """ATM's point source: where the run's stage 1 drew its query points and which grid tracks its
    policy read; one name where both stages share it, else "stage 1 X, policy Y" (runs from before
    the policy's option read every track). "all" for runs from before either option, "?" where the
    config does not record the preset; a config without the policy's part says stage 1's alone, one
    without stage 1 (BC, a control trained without a track model) the policy's. A policy without
    track motion (the ablation's control) adds "(mask only)", or "(mask + instruction)" where it
    reads the instruction as well; on "all" (no mask: every track one constant) "(constant tracks
    + instruction)", the paper's BC in ATM's network."""
    if "preset_config" not in config:
        return "?"
    preset = config["preset_config"]
    stage1 = preset.get("track_training", {}).get("point_source")
    if "policy" not in preset:
        return str(stage1 or "all")
    policy = str(preset["policy"].get("point_source", "all"))
    tracks = str(stage1 or policy)
    mask_only = ""
    if not preset["policy"].get("track_motion", True):
        language = bool(preset["policy"].get("language"))
        if policy == "all":  # every track one constant: ATM's network with its tracks zeroed
            mask_only = " (constant tracks + instruction)" if language else " (constant tracks)"
        else:
            mask_only = " (mask + instruction)" if language else " (mask only)"
    return f"{tracks}{mask_only}" if policy == tracks else f"stage 1 {tracks}, policy {policy}{mask_only}"


# What an ablation varies, as the ablation table's columns, each read from a run's config.json:
# the labelled demos, ATM's point source (both stages), and a free-form label ("ablation", written
# by hand).
ABLATION_SETTINGS = {
    "labelled": lambda config: str(config.get("labelled", "?")),
    "point source": _point_source,
    "variant": lambda config: str(config.get("ablation", "")),
}


def _differing_settings(runs: list[Run]) -> tuple[list[int], list[tuple[str, ...]]]:
    """Which `ABLATION_SETTINGS` differ between the runs (their indices) and, per run, its values
    of those."""
    settings = [tuple(read(run.config) for read in ABLATION_SETTINGS.values()) for run in runs]
    shown = [i for i in range(len(ABLATION_SETTINGS)) if len({s[i] for s in settings}) > 1]
    return shown, [tuple(setting[i] for i in shown) for setting in settings]


def variant_records(runs: list[Run]) -> list[dict[str, Any]]:
    """The runs' records for the success tables. An agent that ran in runs of different settings
    (the ablation table's columns) is named per setting, "atm [robot]", so that its variants are
    never pooled into one row; an agent that ran under one setting keeps its name."""
    labels = [", ".join(v for v in values if v) for values in _differing_settings(runs)[1]]
    settings_of: dict[str, set[str]] = defaultdict(set)
    for run, label in zip(runs, labels):
        for r in run.records:
            settings_of[r["agent"]].add(label)
    return [{**r, "agent": f"{r['agent']} [{label}]"} if len(settings_of[r["agent"]]) > 1 else r
            for run, label in zip(runs, labels) for r in run.records]


def ablation_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]] | None:
    """Runs of one agent that differ in labelled demos, point source or ablation label, side by
    side: one column per setting that differs between the runs (none differs: no table)."""
    shown, per_run = _differing_settings(runs)
    if not shown:
        return None
    variants: dict[tuple[str, str, tuple[str, ...]], list[float]] = defaultdict(list)
    for run, values in zip(runs, per_run):
        for (agent, suite), seeds in per_seed_success(run.records).items():
            variants[(agent, suite, values)] += list(seeds.values())
    names = list(ABLATION_SETTINGS)
    headers = ["method", "suite", *(names[i] for i in shown), "success %", "seeds"]
    rows = []
    order = {agent: i for i, agent in enumerate(_agent_order({k[0] for k in variants}))}
    for (agent, suite, values) in sorted(variants, key=lambda k: (order[k[0]], _suite_key(k[1]), k[2])):
        vals = np.array(variants[(agent, suite, values)])
        rows.append([_title(agent), SUITE_TITLES.get(suite, suite), *values, _fmt(vals.mean(), vals.std()),
                     str(len(vals))])
    return headers, rows


def render(headers: list[str], rows: list[list[str]], fmt: str, floatfmt: str = "g") -> str:
    """A table as Markdown, LaTeX or CSV; `floatfmt` formats numeric cells (tabulate parses them)."""
    from tabulate import tabulate

    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return buffer.getvalue()
    table = tabulate(rows, headers=headers, tablefmt={"md": "github", "tex": "latex_booktabs"}[fmt], floatfmt=floatfmt)
    return table + "\n"


def bar_plot(records: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars per suite, one colour per method, error bars = std over seeds (Fig. 4b)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    success = per_seed_success(records)
    suites = _suites(success)
    agents = _agent_order({k[0] for k in success})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(suites) * max(1, len(agents)) / 4, 3.2), dpi=120)
    width = 0.8 / max(1, len(agents))
    for i, agent in enumerate(agents):
        means, stds = [], []
        for suite in suites:
            vals = np.array(list(success.get((agent, suite), {}).values()) or [np.nan])
            means.append(np.nanmean(vals))
            stds.append(np.nanstd(vals))
        xs = np.arange(len(suites)) + (i - (len(agents) - 1) / 2) * width
        bars = ax.bar(xs, means, width, yerr=stds, capsize=2, label=_title(agent))
        # The value on each bar, so that 0 % reads as measured rather than missing.
        ax.bar_label(bars, labels=["" if np.isnan(m) else f"{m:.0f}" for m in means], fontsize=6, padding=2)
    ax.set_xticks(np.arange(len(suites)), [SUITE_TITLES.get(s, s) for s in suites])
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 100)
    # At most three methods per legend row: a one-suite figure is narrow, and wider rows were cut off.
    ax.legend(fontsize=7, ncol=min(3, len(agents)), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


FLOAT_FORMATS = {"throughput": ".1f", "timing": ".2f", "success_per_task": ".1f"}  # numeric cells tabulate reformats


def write_tables(run_paths: Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    """Regenerate every table and the plot from `run_paths` into `out_dir`; returns the files.
    The Markdown success table is followed by the agent-seeds left out as unfinished and the
    reference-agent verdicts and the paper's claim (ATM > BC), as a list (CSV and LaTeX hold tables only)."""
    runs = load_runs(run_paths)
    records = variant_records(runs)
    out = Path(out_dir)
    written: list[Path] = []
    tables = {"success": comparison_rows(records), "success_per_task": per_task_rows(records)}
    notes = {"success": "".join(f"- {line}\n" for line in
                                unfinished_lines(runs) + reference_lines(records) + claim_lines(records))}
    if any(run.flops for run in runs):
        tables["compute"] = compute_rows(runs)
    throughput = throughput_rows(runs)
    if throughput:
        tables["throughput"] = throughput
    timing = timing_rows(runs)
    if timing:
        tables["timing"] = timing
    ablation = ablation_rows(runs)
    if ablation:
        tables["ablation"] = ablation
    for name, (headers, rows) in tables.items():
        for fmt in ("md", "csv", "tex"):
            path = out / f"{name}.{fmt}"
            text = render(headers, rows, fmt, floatfmt=FLOAT_FORMATS.get(name, "g"))
            if fmt == "md" and notes.get(name):
                text += "\n" + notes[name]
            write_text_atomic(path, text)
            written.append(path)
    plot = out / "success.png"
    bar_plot(records, plot)
    written.append(plot)
    return written
