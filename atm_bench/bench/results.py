"""The results store: one JSON record per evaluated episode, appended to a JSONL file.

Why JSONL: a record is on disk the moment its episode ends (flushed and fsynced), so an
interrupted evaluation loses at most the episodes in flight, and a rerun skips every episode
already recorded. A crash can leave a partial last line; reading reports such lines and skips
them, and the next append starts on a fresh line so it never glues onto the fragment.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from atm_bench.io import write_text_atomic

# Fields that identify an episode: a rerun with the same values skips it.
KEY_FIELDS = ("agent", "suite", "task", "init_state", "seed", "protocol", "preset", "horizon")
REQUIRED_FIELDS = KEY_FIELDS + ("success", "steps", "seconds")


def record_key(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k) for k in KEY_FIELDS)


@dataclass
class ReadReport:
    """What reading found: good records and the line numbers of bad ones."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)


class ResultsStore:
    """Append-only JSONL store of episode records at `path`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self, warn: bool = True) -> ReadReport:
        """All well-formed records; malformed or incomplete lines are counted and skipped."""
        report = ReadReport()
        if not self.path.exists():
            return report
        with open(self.path, "r", encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    report.bad_lines.append(number)
                    continue
                if not isinstance(record, dict) or any(k not in record for k in REQUIRED_FIELDS):
                    report.bad_lines.append(number)
                    continue
                report.records.append(record)
        if warn and report.bad_lines:
            shown = ", ".join(map(str, report.bad_lines[:10]))
            print(
                f"atm-bench: warning: {self.path}: skipped {len(report.bad_lines)} corrupt or partial "
                f"line(s) (line {shown}); their episodes will be run again",
                file=sys.stderr,
            )
        return report

    def records(self) -> list[dict[str, Any]]:
        return self.read().records

    def keys(self) -> set[tuple]:
        return {record_key(r) for r in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably (flush + fsync) on its own line."""
        missing = [k for k in REQUIRED_FIELDS if k not in record]
        if missing:
            raise ValueError(f"result record lacks {missing}")
        line = json.dumps(record, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a crash left a partial line: do not glue onto it
                    line = "\n" + line
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.append(record)

    def absorb(self, other: "ResultsStore") -> int:
        """Append `other`'s records whose episode is not in this store yet, then delete `other`
        (a cluster shard's file): merging twice, or after a crash between the two, counts no
        episode twice. Returns how many records were added."""
        have, new = self.keys(), []
        for record in other.records():
            if record_key(record) not in have:
                have.add(record_key(record))
                new.append(record)
        self.extend(new)
        other.path.unlink(missing_ok=True)
        return len(new)

    def supersede(self, match: Callable[[dict[str, Any]], bool]) -> int:
        """Move the records for which `match` is true out of the store, into `superseded_path`
        (appended), e.g. the episodes of a checkpoint that was trained again: they no longer
        describe the agent and must be run again. The store is rewritten atomically (bad lines
        are dropped with the warning `read` gives). Returns how many records moved."""
        records = self.read().records
        old = [r for r in records if match(r)]
        if not old:
            return 0
        ResultsStore(self.superseded_path).extend(old)
        write_text_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records if not match(r)))
        return len(old)

    @property
    def superseded_path(self) -> Path:
        """Where `supersede` keeps moved records: `<name>.superseded.jsonl` beside the store
        (never read as results: `is_superseded_file`)."""
        return self.path.with_name(f"{self.path.stem}{SUPERSEDED_SUFFIX}")


SUPERSEDED_SUFFIX = ".superseded.jsonl"


def is_superseded_file(path: str | os.PathLike) -> bool:
    return Path(path).name.endswith(SUPERSEDED_SUFFIX)


def success_table(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (agent, suite, protocol, task) rows: episodes, successes, rate, mean steps."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["agent"], r["suite"], r["protocol"], r["task"]), []).append(r)
    rows = []
    for (agent, suite, protocol, task), rs in sorted(groups.items(), key=lambda kv: kv[0]):
        successes = sum(bool(r["success"]) for r in rs)
        rows.append(
            {
                "agent": agent,
                "suite": suite,
                "protocol": protocol,
                "task": task,
                "task_name": rs[0].get("task_name", ""),
                "episodes": len(rs),
                "successes": successes,
                "success_rate": successes / len(rs),
                "mean_steps": sum(r["steps"] for r in rs) / len(rs),
            }
        )
    return rows
