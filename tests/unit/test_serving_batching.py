"""Server-side batching: merged calls give each request exactly its own answer."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from serving.batching import Batcher, BatchingParameters
from serving.errors import ServingError
from serving.servable import Servable
from serving.testing import push_toy


@pytest.fixture(scope="module")
def servable(tmp_path_factory: pytest.TempPathFactory) -> Servable:
    base = tmp_path_factory.mktemp("batching")
    return Servable("toy", 1, push_toy(base, 1, scale=2.0))


def test_concurrent_requests_are_merged_and_split_back(servable: Servable) -> None:
    # Varying row counts and string values: merged tasks are told apart by identity, never by
    # comparing their numpy feeds (that comparison raised inside the worker and stalled it).
    batcher = Batcher(BatchingParameters(max_batch_size=64, batch_timeout_micros=2000))
    results: dict[int, dict] = {}

    def call(i: int) -> None:
        rows = 1 + i % 3
        feeds = {"x": np.array([float(i)] * rows), "s": np.array([b"a" * i] * rows, dtype=object)}
        out = batcher.submit(servable, "serving_default", feeds).result(timeout=60)
        results[i] = {"y": out["y"].tolist(), "n": out["n"].tolist()}

    for _ in range(3):  # the stall was intermittent: several rounds on one batcher
        results.clear()
        threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        assert sorted(results) == list(range(40))
        for i, out in results.items():
            assert out["y"] == [2.0 * i] * (1 + i % 3)
            assert out["n"] == [i] * (1 + i % 3)
    assert batcher.batches < 120 and batcher.merged > 1, "nothing was merged"
    batcher.stop()


def test_a_caller_that_gave_up_does_not_stop_the_batcher(servable: Servable) -> None:
    batcher = Batcher(BatchingParameters(max_batch_size=64, batch_timeout_micros=50000))
    feeds = {"x": np.array([3.0]), "s": np.array([b"abc"], dtype=object)}
    with batcher._cond:  # hold the queue so both requests are still waiting when one is cancelled
        abandoned = batcher.submit(servable, "serving_default", feeds)
        kept = batcher.submit(servable, "serving_default", feeds)
        assert abandoned.cancel()
    assert kept.result(timeout=30)["y"].tolist() == [6.0]
    assert batcher.submit(servable, "serving_default", feeds).result(timeout=30)["n"].tolist() == [3]
    batcher.stop()


def test_a_bad_request_does_not_fail_its_batch_mates(servable: Servable) -> None:
    batcher = Batcher(BatchingParameters(max_batch_size=64, batch_timeout_micros=20000))
    good = batcher.submit(servable, "serving_default", {"x": np.array([1.0]), "s": np.array([b"ab"], dtype=object)})
    bad = batcher.submit(servable, "serving_default", {"x": np.array([1.0]), "s": np.array([b"no!"], dtype=object)})
    assert good.result(timeout=30)["y"].tolist() == [2.0]
    with pytest.raises(ServingError) as info:
        bad.result(timeout=30)
    assert info.value.code == "INVALID_ARGUMENT" and "must not contain" in info.value.message
    batcher.stop()


def test_accepts_only_batchable_predict_calls(servable: Servable) -> None:
    batcher = Batcher(BatchingParameters(max_batch_size=4))
    one = {"x": np.array([1.0]), "s": np.array([b""], dtype=object)}
    assert batcher.accepts(servable, "serving_default", one)
    assert not batcher.accepts(servable, "classify_x", {"inputs": np.array([b""], dtype=object)})
    assert not batcher.accepts(servable, "serving_default", {k: np.repeat(v, 5) for k, v in one.items()})
    batcher.stop()


def test_toy_base_has_one_version(tmp_path: Path) -> None:
    push_toy(tmp_path, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["5"]
