"""Sampled request/response logging to JSON-lines, for monitoring served traffic.

Open-source TF Serving has no such log, so the project keeps its own: one file
per UTC day, written by a background thread so that a slow disk never adds
latency to a request (records are dropped, and counted, when it falls behind).
"""
from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from serving.codec import to_json

log = logging.getLogger("serving")


def _columns(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: to_json(k, v) for k, v in arrays.items()}


def _append_lines(path: Path, lines: list[str]) -> None:
    """Appends whole lines. The folder is made again if it was removed (a cleanup, a `mv` of the logs), and a
    last line left unfinished (the server killed mid-write, a full disk) is ended first, so the first new record
    is not glued onto it and lost with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as fh:
        fh.seek(0, 2)
        unfinished = False
        if fh.tell():
            fh.seek(-1, 2)
            unfinished = fh.read(1) != b"\n"
        fh.write((("\n" if unfinished else "") + "\n".join(lines) + "\n").encode("utf-8"))


class RequestLogger:
    """Writes a sample of requests as {ts, model, version, signature, inputs, outputs}."""

    def __init__(self, directory: Path, sample_rate: float, max_queue: int = 10_000,
                 on_drop: Callable[[], None] | None = None, seed: int | None = None) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"request log sample rate must be within [0, 1], got {sample_rate}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self._random = random.Random(seed)
        self._on_drop = on_drop or (lambda: None)
        self._thread = threading.Thread(target=self._write_loop, name="request-log", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Decide before converting anything, so unsampled requests cost nothing."""
        return self.sample_rate > 0 and self._random.random() < self.sample_rate

    def log(self, model: str, version: int, signature: str, protocol: str,
            inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        record = {"ts": time.time(), "model": model, "version": version, "signature": signature,
                  "protocol": protocol, "inputs": inputs, "outputs": outputs}
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._on_drop()

    def _path(self, ts: float) -> Path:
        return self.directory / f"requests-{time.strftime('%Y%m%d', time.gmtime(ts))}.jsonl"

    def _write_loop(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            batch = [record]
            while len(batch) < 500:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._write(batch)
                    return
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        by_path: dict[Path, list[str]] = {}
        for rec in batch:
            rec = {**rec, "inputs": _columns(rec["inputs"]), "outputs": _columns(rec["outputs"])}
            by_path.setdefault(self._path(rec["ts"]), []).append(json.dumps(rec))
        for path, lines in by_path.items():
            try:
                _append_lines(path, lines)
            except OSError as exc:  # a full disk, a folder made read-only: the records are lost, and counted
                log.error("request log write to %s failed: %s", path, exc)
                for _ in lines:
                    self._on_drop()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued; called on shutdown so no sampled record is lost."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("request log writer is stuck; %d records not written", self._queue.qsize())
            return
        self._thread.join(timeout)
