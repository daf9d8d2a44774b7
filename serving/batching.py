"""Server-side batching: concurrent small requests run as one model call.

A 1-row call of the taxi model costs about as much as a 32-row call, so under
concurrent load merging requests is what keeps throughput near the in-process
rate on a 2-core machine. Same knobs as TF Serving's batching parameters file.
A worker takes whatever is queued when it becomes free, so a lone request waits
no batching timeout unless one is configured.
"""
from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from serving.codec import PREDICT_METHOD
from serving.errors import ServingError
from serving.servable import Servable


@dataclass(frozen=True)
class BatchingParameters:
    """Subset of TF Serving's BatchingParameters that the local server honours."""

    max_batch_size: int = 128
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 64
    num_batch_threads: int = 1  # one warm thread: the next batch fills while this one runs


@dataclass(eq=False)  # compared by identity: a generated __eq__ would compare numpy feeds
class _Task:
    key: tuple
    servable: Servable
    signature: str
    feeds: dict[str, np.ndarray]
    rows: int
    future: Future = field(default_factory=Future)


class Batcher:
    """Merges queued predict calls with the same servable, signature and input shapes."""

    def __init__(self, params: BatchingParameters) -> None:
        self.params = params
        self._queue: collections.deque[_Task] = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self.batches = self.merged = 0  # model calls made, and how many requests shared one
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher-{i}", daemon=True)
            for i in range(max(1, params.num_batch_threads))
        ]
        for t in self._threads:
            t.start()

    def accepts(self, servable: Servable, signature: str, feeds: dict[str, np.ndarray]) -> bool:
        sig = servable.signatures.get(signature)
        if sig is None or sig.method_name != PREDICT_METHOD or not feeds:
            return False
        if any(s.shape is None or not s.shape or s.shape[0] != -1 for s in list(sig.outputs.values()) + list(sig.inputs.values())):
            return False
        rows = {a.shape[0] if a.ndim else None for a in feeds.values()}
        return len(rows) == 1 and None not in rows and 0 < rows.pop() <= self.params.max_batch_size

    def submit(self, servable: Servable, signature: str, feeds: dict[str, np.ndarray]) -> Future:
        """Queue a call; the future resolves when its batch has run."""
        key = (id(servable), signature, tuple(sorted((k, v.shape[1:], v.dtype.str) for k, v in feeds.items())))
        task = _Task(key, servable, signature, feeds, next(iter(feeds.values())).shape[0])
        with self._cond:
            if len(self._queue) >= self.params.max_enqueued_batches * self.params.max_batch_size:
                raise ServingError("UNAVAILABLE", "The batch scheduling queue is full; retry later")
            self._queue.append(task)
            self._cond.notify()
        return task.future

    def _take(self) -> list[_Task] | None:
        with self._cond:
            while True:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return None
                first = self._queue.popleft()
                if first.future.set_running_or_notify_cancel():  # False: its caller gave up
                    break
            batch, rows = [first], first.rows
            deadline = time.monotonic() + self.params.batch_timeout_micros / 1e6
            while True:
                rows = self._take_mates(first.key, batch, rows)
                remaining = deadline - time.monotonic()
                if rows >= self.params.max_batch_size or remaining <= 0:
                    return batch
                self._cond.wait(remaining)

    def _take_mates(self, key: tuple, batch: list[_Task], rows: int) -> int:
        """Move queued tasks that can share the batch into it, in one pass; the lock is held."""
        kept: collections.deque[_Task] = collections.deque()
        for task in self._queue:
            if task.key != key or rows + task.rows > self.params.max_batch_size:
                kept.append(task)
            elif task.future.set_running_or_notify_cancel():
                batch.append(task)
                rows += task.rows
        self._queue = kept
        return rows

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._run_batch(batch)
            except BaseException as exc:  # never let the worker die: every later request would hang
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(exc)

    def _run_batch(self, batch: list[_Task]) -> None:
        self.batches += 1
        if len(batch) == 1:
            self._run_one(batch[0])
            return
        self.merged += len(batch)
        first = batch[0]
        try:
            feeds = {k: np.concatenate([t.feeds[k] for t in batch]) for k in first.feeds}
            outputs = first.servable.run(first.signature, feeds)
            total = sum(t.rows for t in batch)
            if any(not v.ndim or v.shape[0] != total for v in outputs.values()):
                raise ValueError("outputs do not keep the batch dimension")
        except Exception:  # one bad request must not fail its batch mates
            for task in batch:
                self._run_one(task)
            return
        offset = 0
        for task in batch:
            task.future.set_result({k: v[offset:offset + task.rows] for k, v in outputs.items()})
            offset += task.rows

    @staticmethod
    def _run_one(task: _Task) -> None:
        try:
            task.future.set_result(task.servable.run(task.signature, task.feeds))
        except BaseException as exc:
            task.future.set_exception(exc)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            queued, self._queue = list(self._queue), collections.deque()
        for task in queued:
            if task.future.set_running_or_notify_cancel():
                task.future.set_exception(ServingError("UNAVAILABLE", "server is shutting down"))
