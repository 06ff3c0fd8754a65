"""Wall time per named stage, kept in a JSON file and summed over the invocations that worked on
a stage, so a run resumed after an interruption reports what each stage cost in all. Used by
`atm-bench run` (`timing.json`) and the benchmark scripts that resume (cross-embodiment).
A stage's time is written every `FLUSH_SECONDS` while it runs, not only when it ends: a process
killed mid-stage (SIGKILL, SIGTERM, the end of a batch job) runs no `finally`, and its hours would
otherwise be missing from the run's total."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from atm_bench.io import JsonFile

FLUSH_SECONDS = 30.0  # the most time of a stage a killed process loses


class StageTimes:
    """`seconds[name]`: the time spent in `timed(name)` blocks so far, over every invocation."""

    def __init__(self, path: str | Path) -> None:
        self.file = JsonFile(path)
        self.seconds: dict[str, float] = self.file.read()
        self._lock = threading.Lock()  # `add` from a block's flushing thread and from the caller

    @contextmanager
    def timed(self, name: str, flush_seconds: float = FLUSH_SECONDS) -> Iterator[None]:
        """Time the block into `name` (also when it raises: the time was spent) and write the
        file, also every `flush_seconds` while the block runs (a daemon thread)."""
        mark = time.perf_counter()
        done = threading.Event()

        def flush() -> None:
            nonlocal mark
            now = time.perf_counter()
            self.add(name, now - mark)
            mark = now

        def beat() -> None:
            while not done.wait(flush_seconds):
                flush()

        thread = threading.Thread(target=beat, name=f"timing:{name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            flush()

    def add(self, name: str, seconds: float) -> None:
        """Add `seconds` spent on `name` elsewhere (a stage run by a cluster worker) and write the file."""
        with self._lock:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 2)
            with self.file.edit() as stored:
                stored[name] = self.seconds[name]
