"""One holder at a time for a lock file, across processes, with who holds it written inside.

`local_runner` holds `<output>/run.lock` for a whole run: two runs on one
output folder would share one MLMD store and one serving_model/ and could
both push. `taxi trigger` holds its own lock around the run it starts.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path


class LockBusy(RuntimeError):
    """Another process holds the lock; the message names it (pid, start time)."""


class LockUnavailable(RuntimeError):
    """The lock file cannot be created (a read-only output folder); the message says where and why."""


def holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
        return f"pid {info.get('pid')}, started {started}"
    except (OSError, ValueError):
        return "unknown holder"


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` for the block, or raise LockBusy at once.

    The kernel drops the lock when the process dies, so a killed run never leaves it stale.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - closed by the with below
    except OSError as error:
        raise LockUnavailable(f"cannot write {path}: {error.strerror or error}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(holder(path)) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "started": time.time()}))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
