"""The locks beside models.config: one label change at a time, and the moves waiting for a load.

A label change takes `<config>.lock` while it reads and writes the config. A
move waits for the server to load its version (minutes, for a large model)
without that lock, so a rollback in an incident is not held up behind it; it
holds `<config>.moving.<pid>` instead, naming the labels it moves and the versions
it pinned, so that changes made meanwhile keep those versions pinned and a
`promote` of the canary being replaced waits for the new one.

Both are flocks: a process that dies lets go of them; no stale marker counts, and the
next label change removes it.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOCK_WAIT_S = 30


class LabelError(RuntimeError):
    """A label change that must not happen; nothing was written."""


class LabelsBusy(LabelError):
    """Not a refusal: another label change holds the lock. Try later."""


def unwritable(path: Path, error: OSError) -> str:
    return f"cannot write {path}: {error.strerror or error}"


class Lock:
    """The label lock, held: `released()` lets other label changes through while this one waits for a load."""

    def __init__(self, handle: IO | None, path: Path) -> None:
        self.handle, self.path = handle, path

    def acquire(self) -> None:
        if self.handle is None:
            return
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabelsBusy(f"another label change holds {self.path} for over {LOCK_WAIT_S} s; "
                                     "try again") from None
                time.sleep(0.2)

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        self.release()
        try:
            yield
        finally:
            self.acquire()


def _beside(config_path: Path, suffix: str) -> Path:
    return config_path.with_name(config_path.name + suffix)


@contextlib.contextmanager
def locked(config_path: Path) -> Iterator[Lock]:
    """One label change at a time, across processes (cron, a person, the runner's hook)."""
    lock_path = _beside(config_path, ".lock")
    if not config_path.parent.is_dir():
        # Nothing pushed here, so every change is refused: no folder or lock file is left behind for it.
        yield Lock(None, lock_path)
        return
    try:
        handle = open(lock_path, "a")  # noqa: SIM115 - closed by the with below
    except OSError as error:
        raise LabelError(unwritable(lock_path, error)) from None
    with handle:
        lock = Lock(handle, lock_path)
        lock.acquire()
        try:
            yield lock
        finally:
            lock.release()


@contextlib.contextmanager
def moving(config_path: Path, model: str, labels: dict[str, int], pins: tuple[int, ...]) -> Iterator[None]:
    """Marks a move under way (entered with the label lock held, before it is let go): one file per process,
    so that two moves waiting at once do not wait for each other."""
    path = _beside(config_path, f".moving.{os.getpid()}")
    try:
        handle = open(path, "w")  # noqa: SIM115 - closed by the with below
    except OSError as error:
        raise LabelError(unwritable(path, error)) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(json.dumps({"model": model, "labels": labels, "pins": list(pins)}))
            handle.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def moves_now(config_path: Path, model: str) -> tuple[dict[str, int], set[int]]:
    """What other processes' moves of `model` are waiting on: the labels they will move (label -> version) and
    the versions they pinned (one config serves several models). A file no process holds (one killed by
    SIGKILL) counts for nothing and is removed. Called with the label lock held."""
    labels: dict[str, int] = {}
    pins: set[int] = set()
    for path in sorted(config_path.parent.glob(glob.escape(config_path.name) + ".moving.*")):
        try:
            handle = open(path)  # noqa: SIM115 - closed by the with below
        except OSError:  # gone meanwhile: that move ended
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: that move is under way
                with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                    move = json.loads(handle.read())
                    if move["model"] != model:
                        continue
                    labels.update({str(k): int(v) for k, v in move["labels"].items()})
                    pins.update(int(v) for v in move["pins"])
                continue
            # No process holds it: a mover killed by SIGKILL left it. Markers are made and removed only under
            # the label lock, which the caller holds, so none is being made now: it goes.
            with contextlib.suppress(OSError):
                path.unlink()
    return labels, pins
