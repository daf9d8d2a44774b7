"""A uniform random sample of a stream, the same one each time the same stream is read.

One piece of code for the two places that cap what they hold: the served rows
of a monitoring window (monitoring/requests.py) and the training Examples the
monitor and the data gate count (monitoring/distances.py). Keeping the first
rows instead would judge the oldest part of a window, or the earliest trips of
a time-sorted file.
"""
from __future__ import annotations

import numpy as np


class BottomK:
    """Bottom-k sampling: every item gets a seeded random key, and the `limit` items with the smallest keys are kept.

    Keys are drawn in stream order from one seeded generator, so the same stream
    gives the same sample, every item is equally likely to be kept however long
    the stream is, and the kept items stay in stream order. The caller holds the
    items: `add` says how many were appended to them, `cut` which of the held
    ones to keep once more than limit + slack are held (a slack lets many items
    share the cost of one cut, for a caller whose cut copies what it holds).
    """

    def __init__(self, limit: int, seed: int = 0, slack: int = 0) -> None:
        if limit < 1:
            raise ValueError(f"a sample needs room for at least one item, not {limit}")
        self.limit, self.slack, self.seen = limit, slack, 0
        self._rng = np.random.default_rng(seed)
        self._keys, self._pending, self._held = np.empty(0), [], 0

    def add(self, count: int) -> None:
        self._pending.append(self._rng.random(count))
        self._held += count
        self.seen += count

    def cut(self, final: bool = False) -> np.ndarray | None:
        """Ascending indices of the held items to keep; None while all of them stay (final: ignore the slack)."""
        if self._held <= self.limit + (0 if final else self.slack):
            return None
        keys = np.concatenate([self._keys, *self._pending])
        keep = np.sort(np.argpartition(keys, self.limit)[:self.limit])
        self._keys, self._pending, self._held = keys[keep], [], self.limit
        return keep
