"""The server's fast signature call answers exactly like TF's public call, and
where the work runs (caller's thread, model thread, batcher) follows the load."""
from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import tensorflow as tf

from serving import signature_call
from serving.batching import BatchingParameters
from serving.config import ModelSpec
from serving.errors import ServingError
from serving.servable import Servable
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy


class _Mixed(tf.Module):
    """Several inputs per dtype (packed), one [-1, 2] input (passed as is)."""

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.float64, name="a"), tf.TensorSpec([None], tf.float64, name="b"),
        tf.TensorSpec([None], tf.float64, name="c"), tf.TensorSpec([None], tf.int64, name="k"),
        tf.TensorSpec([None], tf.string, name="s"), tf.TensorSpec([None], tf.string, name="t"),
        tf.TensorSpec([None, 2], tf.float32, name="pair"),
    ])
    def predict(self, a, b, c, k, s, t, pair):  # noqa: ANN001, ANN201
        text = tf.strings.join([s, t], separator="|")
        return {"value": a * 100.0 + b * 10.0 + c + tf.cast(k, tf.float64) * 1000.0,
                "text": text, "pair_sum": tf.reduce_sum(pair, axis=1)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Servable:
    path = tmp_path_factory.mktemp("mixed") / "1"
    module = _Mixed()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.predict.get_concrete_function()})
    servable = Servable("mixed", 1, path)
    servable.warm_up()
    return servable


def _feeds(rows: int) -> dict[str, np.ndarray]:
    r = np.arange(rows, dtype=np.float64)
    return {"a": r, "b": r + 1, "c": r + 2, "k": np.arange(rows, dtype=np.int64) * 3,
            "s": np.array([f"s{i}".encode() for i in range(rows)], dtype=object),
            "t": np.array([f"t{i}".encode() for i in range(rows)], dtype=object),
            "pair": np.stack([r, -2 * r], axis=1).astype(np.float32)}


@pytest.mark.parametrize("rows", [1, 7, signature_call.INLINE_EXECUTOR_MAX_ROWS + 50])
def test_packed_call_answers_like_the_public_call(mixed: Servable, rows: int) -> None:
    call = mixed._calls["serving_default"]
    assert call.packed is not None and call.inline_executor
    assert sorted(len(names) for _, names in call.groups) == [1, 1, 2, 3]  # k, pair, (s, t), (a, b, c)
    feeds = _feeds(rows)
    got = mixed.run("serving_default", feeds)
    public = call.fn(**{k: tf.constant(v) for k, v in feeds.items()})
    assert sorted(got) == ["pair_sum", "text", "value"]
    for name, want in public.items():
        np.testing.assert_array_equal(got[name], want.numpy())
    assert got["text"][-1] == f"s{rows - 1}|t{rows - 1}".encode()


def test_feeds_the_packed_call_cannot_take_get_tfs_own_answer(mixed: Servable) -> None:
    feeds = _feeds(2)
    del feeds["t"]
    with pytest.raises(ServingError, match="model rejected the input: .*'t'"):
        mixed.run("serving_default", feeds)
    feeds = _feeds(3)
    feeds["a"] = feeds["a"].astype(np.float32)  # not the declared dtype: converted by tf.constant
    assert mixed.run("serving_default", feeds)["value"].tolist() == [12.0, 3123.0, 6234.0]  # 3111 r + 12


def test_a_graph_the_inline_executor_refuses_stays_on_the_default_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signature_call, "INLINE_EXECUTOR", "NO_SUCH_EXECUTOR")
    servable = Servable("toy", 1, push_toy(tmp_path, 1, scale=3.0))
    servable.warm_up()
    assert not servable._calls["serving_default"].inline_executor
    out = servable.run("serving_default", {"x": np.array([2.0]), "s": np.array([b"ab"], dtype=object)})
    assert out["y"].tolist() == [6.0] and out["n"].tolist() == [2]


def test_a_lone_request_runs_in_place_and_concurrent_ones_are_batched(tmp_path: Path) -> None:
    base = tmp_path / "toy"
    base.mkdir()
    push_toy(base, 1, scale=2.0)
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=None,
                            file_system_poll_wait_seconds=0, batching=BatchingParameters(batch_timeout_micros=2000))
    body = {"instances": [{"x": 1.5, "s": "abc"}]}
    with ServingServer(options) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for _ in range(20):
            assert http.post("/v1/models/toy:predict", json=body).json() == {"predictions": [{"n": 3, "y": 3.0}]}
        assert server.batcher.batches == 0, "a lone request went through the batcher's thread"

        answers: list[dict] = []

        def client(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as own:
                for _ in range(10):
                    answers.append(own.post("/v1/models/toy:predict",
                                            json={"instances": [{"x": float(i), "s": "a" * i}]}).json())

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(answers) == 160
        assert sorted((a["predictions"][0]["n"], a["predictions"][0]["y"]) for a in answers) == sorted(
            (i, 2.0 * i) for i in range(16) for _ in range(10))
        assert server.batcher.merged > 0, "concurrent requests were not merged"
