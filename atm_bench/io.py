"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file behind; a directory
locked against a second writer."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from atm_bench.errors import UserError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def exclusive(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an advisory lock on the file `path` (made if missing) for the block; where another
    process holds it, one line that names `what` and the holder. The kernel drops the lock with
    the process, so a killed holder leaves none behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"{what} is in use by {holder} ({path}): wait for it or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def utc_timestamp() -> str:
    """Now in UTC to the second (ISO 8601): the one form a run's times take, so its episodes
    (`finished_at`) and invocations (`started_at`) can be ordered against each other."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object on disk ({} when the file is missing). A corrupt file (a hand edit gone wrong)
    stops the command in one line that names it, not a decoder traceback."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: corrupt JSON ({exc}); restore it, or remove it and rerun the stage that writes it") from None


class JsonFile:
    """A small JSON object on disk (a run's stages, FLOPs, throughput, timing): read fresh for
    every use and written atomically on every change, so a crash loses at most the change."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, Any]:
        return read_json(self.path)

    @contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """`with store.edit() as data:` change `data`; written when the block ends without error."""
        data = self.read()
        yield data
        write_json_atomic(self.path, data)
