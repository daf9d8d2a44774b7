"""Server-side batching: merged calls give each request exactly its own answer."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.batching import Batcher, BatchingParameters
from serving.errors import ServingError
from serving.registry import Servable
from serving.testing import push_toy


@pytest.fixture(scope="module")
def servable(tmp_path_factory: pytest.TempPathFactory) -> Servable:
    base = tmp_path_factory.mktemp("batching")
    return Servable("toy", 1, push_toy(base, 1, scale=2.0))


_MERGE_SCRIPT = """
import json, sys, threading
import numpy as np
from serving.batching import Batcher, BatchingParameters
from serving.registry import Servable
from serving.testing import push_toy

servable = Servable("toy", 1, push_toy(sys.argv[1], 1, scale=2.0))
batcher = Batcher(BatchingParameters(max_batch_size=64, batch_timeout_micros=2000))
results = {}

def call(i):
    feeds = {"x": np.array([float(i)] * (1 + i % 3)), "s": np.array([b"a" * i] * (1 + i % 3), dtype=object)}
    out = batcher.submit(servable, "serving_default", feeds).result(timeout=60)
    results[i] = {"y": out["y"].tolist(), "n": out["n"].tolist()}

threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=60)
batcher.stop()
print(json.dumps({"results": results, "batches": batcher.batches, "merged": batcher.merged}))
"""


@pytest.mark.xfail(strict=False, reason="known bug: the batcher intermittently stalls (about 1 run in 4: "
                   "a few requests answered, the rest time out), also in its own process; root cause not found yet")
def test_concurrent_requests_are_merged_and_split_back(tmp_path: Path) -> None:
    # In its own process, so that threads other tests leave behind are ruled out.
    done = subprocess.run([sys.executable, "-c", _MERGE_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    results = {int(i): out for i, out in report["results"].items()}
    assert len(results) == 40
    for i, out in results.items():
        assert out["y"] == [2.0 * i] * (1 + i % 3)
        assert out["n"] == [i] * (1 + i % 3)
    assert report["batches"] < 40 and report["merged"] > 1, "nothing was merged"


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
