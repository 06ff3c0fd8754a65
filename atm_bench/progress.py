"""Progress reporting: one display for a whole `atm-bench run`, plain lines when it is logged.

`RunDisplay` is the run's display. On a terminal it is one live rich view: a header (stage,
agent, seed, task, episodes done/total over the run, ETA of the stage) above a bar per piece of
work in flight (a training loop, the demos of a task, the episodes of an evaluation). When stdout
is not a terminal (a long run logged to a file) it prints plain lines instead, one per stage
start and end and one per finished piece of work (a task evaluated, a training loop, a task's
demos), never bar redraws.

Code that has work to show asks `bars(enabled)` for something that behaves like a
`rich.progress.Progress` (context manager; `add_task`, `update`, `advance`, `remove_task`).
Inside a run display it gets rows of that display; elsewhere (`atm-bench train`, `eval`, ...)
a rich Progress of its own, as before. `status(...)`, `episode_finished()` and `line(...)` talk
to the run display and do nothing without one. A row added with `log=False` prints no line when
it finishes (its owner prints its own, e.g. per evaluated task).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

_ACTIVE: "RunDisplay | None" = None
_LOCK = threading.Lock()


def default_columns() -> list:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn()]


def active() -> "RunDisplay | None":
    """The run display in use, if any."""
    return _ACTIVE


def bars(enabled: bool = True, columns: list | None = None, **kwargs: Any):
    """Progress rows: the active run display's when there is one, else a rich Progress."""
    display = _ACTIVE
    if display is not None and enabled:
        return _Rows(display)
    from rich.progress import Progress

    return Progress(*(columns or default_columns()), disable=not enabled, **kwargs)


def status(**fields: Any) -> None:
    """Set header fields of the run display (stage, agent, seed, task, ...); None clears one."""
    if _ACTIVE is not None:
        _ACTIVE.status(**fields)


def episode_finished(count: int = 1) -> None:
    """Count finished episodes towards the run's total."""
    if _ACTIVE is not None:
        _ACTIVE.episode_finished(count)


def line(text: str) -> None:
    """One line that stays (above the live view, or in the log)."""
    if _ACTIVE is not None:
        _ACTIVE.line(text)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


@dataclass
class _Row:
    description: str
    total: float | None
    completed: float = 0.0
    fields: dict[str, Any] = field(default_factory=dict)
    log: bool = True
    started: float = field(default_factory=time.perf_counter)
    reported: bool = False
    rich_id: Any = None


class RunDisplay:
    """The display of one run. `live`: None = animate only when `stream` is a terminal.

    Use as a context manager around the run; `stage(name)` around each stage.
    """

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, live: bool | None = None,
                 title: str = "") -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stdout
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live and enabled
        self.title = title
        self.fields: dict[str, Any] = {}
        self.episodes_done = 0
        self.episodes_total: int | None = None
        self._progress = None
        self._previous: RunDisplay | None = None

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> "RunDisplay":
        global _ACTIVE
        if self.live:
            from rich.console import Console

            columns = default_columns()
            self._progress = _header_progress_class()(self, *columns[:3], _note_column(), *columns[3:],
                                                      console=Console(file=self.stream), transient=True)
            self._progress.start()
        with _LOCK:
            self._previous, _ACTIVE = _ACTIVE, (self if self.enabled else _ACTIVE)
        return self

    def __exit__(self, *exc: Any) -> None:
        global _ACTIVE
        with _LOCK:
            _ACTIVE = self._previous
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # -- what the run tells it ----------------------------------------------------------------

    @contextmanager
    def stage(self, name: str, **fields: Any) -> Iterator[None]:
        """A stage: a start line, header fields for its duration, an end line with its time."""
        self.status(stage=name, task=None, **fields)
        self.line(f"[stage] {name}: start" + _fields_text(fields))
        start = time.perf_counter()
        outcome = "failed"
        try:
            yield
            outcome = "done"
        except KeyboardInterrupt:
            outcome = "interrupted"
            raise
        finally:
            self.line(f"[stage] {name}: {outcome} in {time.perf_counter() - start:.1f} s")
            self.status(stage=None, task=None, **{k: None for k in fields})

    def status(self, **fields: Any) -> None:
        for key, value in fields.items():
            if value is None:
                self.fields.pop(key, None)
            else:
                self.fields[key] = value
        self._refresh()

    def set_episodes(self, done: int, total: int) -> None:
        self.episodes_done, self.episodes_total = int(done), int(total)
        self._refresh()

    def episode_finished(self, count: int = 1) -> None:
        self.episodes_done += count
        self._refresh()

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    # -- the header ------------------------------------------------------------------------

    def header(self) -> str:
        f = self.fields
        parts = [self.title] if self.title else []
        if "stage" in f:
            parts.append(f"stage {f['stage']}")
        for key in ("agent", "seed", "task"):
            if key in f:
                parts.append(f"{key} {f[key]}")
        if self.episodes_total:
            parts.append(f"episodes {self.episodes_done}/{self.episodes_total}")
        eta = self._eta()
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        return " · ".join(parts)

    def _eta(self) -> float | None:
        """The stage's time left: the slowest estimate of its rows with a known total."""
        if self._progress is None:
            return None
        estimates = [t.time_remaining for t in self._progress.tasks if t.total and t.time_remaining is not None]
        return max(estimates) if estimates else None

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.refresh()


class _Rows:
    """What `bars()` gives inside a run display: rows of its view, lines in its log."""

    def __init__(self, display: RunDisplay) -> None:
        self.display = display
        self.rows: dict[int, _Row] = {}
        self._next = 0

    def __enter__(self) -> "_Rows":
        return self

    def __exit__(self, *exc: Any) -> None:
        for task_id in list(self.rows):
            self.remove_task(task_id, finished=exc[0] is None)

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: float = 0,
                 visible: bool = True, log: bool = True, **fields: Any) -> int:
        task_id = self._next
        self._next += 1
        row = _Row(description, total, float(completed), {"note": "", **fields}, log)
        progress = self.display._progress
        if progress is not None:
            row.rich_id = progress.add_task(description, total=total, completed=completed, visible=visible,
                                            **row.fields)
        self.rows[task_id] = row
        return task_id

    def update(self, task_id: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields: Any) -> None:
        row = self.rows.get(task_id)
        if row is None:
            return
        if total is not None:
            row.total = total
        if completed is not None:
            row.completed = float(completed)
        if advance is not None:
            row.completed += advance
        if description is not None:
            row.description = description
        row.fields.update(fields)
        progress = self.display._progress
        if progress is not None:
            progress.update(row.rich_id, total=total, completed=completed, advance=advance, description=description,
                            visible=visible, **fields)
        if row.total is not None and row.total > 0 and row.completed >= row.total:
            self._report(row)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def remove_task(self, task_id: int, finished: bool = True) -> None:
        row = self.rows.pop(task_id, None)
        if row is None:
            return
        if finished and row.completed > 0:
            self._report(row)
        progress = self.display._progress
        if progress is not None:
            progress.remove_task(row.rich_id)

    def _report(self, row: _Row) -> None:
        if row.reported or not row.log:
            return
        row.reported = True
        note = row.fields.get("note")
        total = f"/{row.total:g}" if row.total else ""
        self.display.line(f"  {row.description}: {row.completed:g}{total}" + (f" ({note})" if note else "")
                          + f" in {time.perf_counter() - row.started:.1f} s")


def _fields_text(fields: dict[str, Any]) -> str:
    shown = [f"{k} {v}" for k, v in fields.items() if v is not None]
    return f" ({', '.join(shown)})" if shown else ""


def _note_column():
    from rich.progress import TextColumn

    return TextColumn("{task.fields[note]}")


def _header_progress_class():
    from rich.progress import Progress

    class HeaderProgress(Progress):
        """A rich Progress whose view starts with the run display's header line."""

        def __init__(self, display: RunDisplay, *columns: Any, **kwargs: Any) -> None:
            self.display = display
            super().__init__(*columns, **kwargs)

        def get_renderables(self):
            from rich.text import Text

            yield Text(self.display.header(), style="bold", overflow="ellipsis", no_wrap=True)
            if self.tasks:
                yield self.make_tasks_table(self.tasks)

    return HeaderProgress
