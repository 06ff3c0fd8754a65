"""Wall time per named stage, kept in a JSON file and summed over the invocations that worked on
a stage, so a run resumed after an interruption reports what each stage cost in all. Used by
`atm-bench run` (`timing.json`) and the benchmark scripts that resume (cross-embodiment)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from atm_bench.io import JsonFile


class StageTimes:
    """`seconds[name]`: the time spent in `timed(name)` blocks so far, over every invocation."""

    def __init__(self, path: str | Path) -> None:
        self.file = JsonFile(path)
        self.seconds: dict[str, float] = self.file.read()

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time the block into `name` (also when it raises: the time was spent) and write the file."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Add `seconds` spent on `name` elsewhere (a stage run by a cluster worker) and write the file."""
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 2)
        with self.file.edit() as stored:
            stored[name] = self.seconds[name]
