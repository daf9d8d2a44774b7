"""Live progress of a local run, read from MLMD while LocalDagRunner writes it.

TFX 1.16's LocalDagRunner offers no per-component callback, but it records
every execution in MLMD as it starts (RUNNING) and ends (COMPLETE, CACHED,
FAILED). A background thread polls that store through its own read-only
connection, so progress needs nothing from the runner and cannot slow it.
The console is the real terminal (fd 1 and 2 go to the run log meanwhile):
in a TTY one line is redrawn in place; without one (CI) plain lines are printed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from typing import TextIO

from pipeline.mlmd_store import STATE_WORDS, executions_in_start_order, node_name, open_readonly, run_contexts

ENDED = {"ran", "failed", "cached", "canceled"}


@dataclasses.dataclass
class Step:
    """One component's execution in the watched run."""

    name: str
    state: str
    started_ms: int
    updated_ms: int

    @property
    def seconds(self) -> float:
        return max(0.0, (self.updated_ms - self.started_ms) / 1000)


def _run_ids(store) -> dict[str, int]:  # noqa: ANN001
    return {c.name: c.id for c in run_contexts(store)}


def read_steps(store, context_id: int) -> list[Step]:  # noqa: ANN001
    """The executions of one pipeline run, in start order, named by their node."""
    steps = []
    for execution in executions_in_start_order(store, context_id):
        steps.append(Step(node_name(store, execution.id), STATE_WORDS.get(execution.last_known_state, "?"),
                          execution.create_time_since_epoch, execution.last_update_time_since_epoch))
    return steps


class ProgressMonitor:
    """Polls MLMD for the run that starts after it and reports each component.

    Use as a context manager around LocalDagRunner().run(...). Errors reading
    the store (not created yet, busy while the runner writes) are retried on
    the next poll: progress is a courtesy and must never break a run.
    """

    def __init__(self, metadata_path: str, console: TextIO, interval: float = 0.5, tty: bool | None = None) -> None:
        self.metadata_path, self.console, self.interval = metadata_path, console, interval
        self.tty = console.isatty() if tty is None else tty
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tfx-progress", daemon=True)
        self._store = None
        self._known_runs: dict[str, int] | None = None
        self._context_id: int | None = None
        self._reported: dict[int, str] = {}  # step index -> last state printed
        self._live = ""
        self.steps: list[Step] = []

    def __enter__(self) -> ProgressMonitor:
        self._known_runs = self._existing_runs()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop polling after one last look, so every finished component is reported."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=10)
        self._clear_live()

    def _existing_runs(self) -> dict[str, int]:
        if not os.path.exists(self.metadata_path):
            return {}
        try:
            return _run_ids(open_readonly(self.metadata_path))
        except Exception:  # noqa: BLE001 - an unreadable store counts as empty
            return {}

    def _loop(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - sqlite busy / store not created yet: retry next tick
                self._store = None
            if stopping:
                return

    def poll(self) -> None:
        """One look at the store: print what started or ended, redraw the live line."""
        if self._context_id is None:
            if not os.path.exists(self.metadata_path):
                return
            self._store = self._store or open_readonly(self.metadata_path)
            new = {name: cid for name, cid in _run_ids(self._store).items() if name not in (self._known_runs or {})}
            if not new:
                return
            self._context_id = max(new.values())
        self._store = self._store or open_readonly(self.metadata_path)
        self.steps = read_steps(self._store, self._context_id)
        for index, step in enumerate(self.steps):
            before = self._reported.get(index)
            if step.state in ENDED and before not in ENDED:
                self._emit(f"  {step.name:<30} {step.state:<7} {step.seconds:6.1f} s")
            elif step.state == "running" and before is None and not self.tty:
                self._emit(f"  {step.name:<30} started")
            self._reported[index] = step.state
        self._draw_live()

    def _emit(self, line: str) -> None:
        self._clear_live()
        self.console.write(line + "\n")
        self.console.flush()

    def _draw_live(self) -> None:
        if not self.tty:
            return
        now_ms = time.time() * 1000
        running = [s for s in self.steps if s.state == "running"]
        text = "  ".join(f"> {s.name} {max(0.0, (now_ms - s.started_ms) / 1000):.0f} s" for s in running)
        if running:
            self.console.write("\r\033[K" + text)
            self.console.flush()
            self._live = text
        else:
            self._clear_live()

    def _clear_live(self) -> None:
        if self._live:
            self.console.write("\r\033[K")
            self.console.flush()
            self._live = ""


def watch(metadata_path: str | None, console: TextIO, enabled: bool = True) -> contextlib.AbstractContextManager:
    """ProgressMonitor around a run, or nothing when disabled or there is no local MLMD file."""
    if not enabled or not metadata_path:
        return contextlib.nullcontext()
    return ProgressMonitor(metadata_path, console)
