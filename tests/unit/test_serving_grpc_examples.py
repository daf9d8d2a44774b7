"""gRPC Classify/Regress and Predict's shape check against a real local server, REST beside it."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.config import ModelSpec
from serving.server import ServerOptions, ServingServer
from tests.unit.conftest import SCALE, examples_request, rpc_error


def _rest_body(method: str, examples: list[dict[str, float]], context: dict[str, float] | None = None) -> dict:
    body: dict[str, Any] = {"signature_name": f"{method}_x", "examples": examples}
    if context is not None:
        body["context"] = context
    return body


CASES = [
    pytest.param([{"x": 0.0}, {"x": 1.0}, {"x": -2.0}], None, id="example_list"),
    pytest.param([{}, {"x": 1.0}], {"x": -0.5}, id="with_context"),
    pytest.param([{}], {}, id="empty_context"),
]


# (gRPC response -> comparable rows, REST answer -> the same rows) per method
ROWS = {
    "classify": (lambda r: [[(c.label, np.float32(c.score)) for c in row.classes] for row in r.result.classifications],
                 lambda j: [[(label, np.float32(score)) for label, score in row] for row in j["results"]]),
    "regress": (lambda r: [np.float32(x.value) for x in r.result.regressions],
                lambda j: [np.float32(v) for v in j["results"]]),
}


@pytest.mark.parametrize("method", ["classify", "regress"])
@pytest.mark.parametrize("examples,context", CASES)
def test_grpc_answers_as_rest(toy_stub: Any, toy_http: httpx.Client, method: str, examples: list,
                              context: dict | None) -> None:
    call = toy_stub.Classify if method == "classify" else toy_stub.Regress
    response = call(examples_request(method, examples, context), timeout=10)
    rest = toy_http.post(f"/v1/models/toy:{method}", json=_rest_body(method, examples, context))
    assert rest.status_code == 200, rest.text
    grpc_rows, rest_rows = ROWS[method]
    assert grpc_rows(response) == rest_rows(rest.json())
    assert (response.model_spec.name, response.model_spec.version.value, response.model_spec.signature_name) == (
        "toy", 7, f"{method}_x")


def test_classify_scores_and_labels(toy_stub: Any) -> None:
    (row,) = toy_stub.Classify(examples_request("classify", [{"x": 1.0}]), timeout=10).result.classifications
    p = 1 / (1 + np.exp(-SCALE))
    assert [c.label for c in row.classes] == ["no", "yes"]
    assert [c.score for c in row.classes] == pytest.approx([1 - p, p], rel=1e-6)


def test_context_is_merged_into_each_example_whose_own_features_win(toy_stub: Any) -> None:
    request = examples_request("regress", [{}, {"x": 5.0}, {"other": 1.0}], context={"x": 2.0})
    response = toy_stub.Regress(request, timeout=10)
    assert [r.value for r in response.result.regressions] == [2.0 * SCALE, 5.0 * SCALE, 2.0 * SCALE]


@pytest.mark.parametrize("method,signature,kind,was", [
    ("classify", "", "classification", "predict"),  # serving_default
    ("classify", "regress_x", "classification", "regress"),
    ("regress", "classify_x", "regression", "classify"),
])
def test_a_signature_of_another_method_is_invalid_argument_with_rest_message(
        toy_stub: Any, toy_http: httpx.Client, method: str, signature: str, kind: str, was: str) -> None:
    error = rpc_error(getattr(toy_stub, method.capitalize()),
                      examples_request(method, [{"x": 1.0}], signature=signature))
    name = signature or "serving_default"
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (f"Expected {kind} signature method_name to be tensorflow/serving/{method}. "
                               f"Was: tensorflow/serving/{was} (signature '{name}')")
    rest = toy_http.post(f"/v1/models/toy:{method}", json={"signature_name": name, "examples": [{"x": 1.0}]})
    assert rest.status_code == 400 and rest.json()["error"] == error.details()


@pytest.mark.parametrize("method", ["classify", "regress"])
@pytest.mark.parametrize("context", [None, {"x": 1.0}], ids=["no_input", "context_only"])
def test_empty_input_is_invalid_argument(toy_stub: Any, method: str, context: dict | None) -> None:
    request = examples_request(method, [], context)
    if context is None:
        request.ClearField("input")
    error = rpc_error(getattr(toy_stub, method.capitalize()), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == "Input is empty."


def test_the_signature_is_checked_before_the_input_as_in_tf_serving(toy_stub: Any) -> None:
    error = rpc_error(toy_stub.Classify, examples_request("classify", [], signature="regress_x"))
    assert "method_name" in error.details()


@pytest.mark.parametrize("method", ["classify", "regress"])
@pytest.mark.parametrize("model,version,code,fragment", [
    ("nope", None, grpc.StatusCode.NOT_FOUND, "nope"),
    ("toy", 99, grpc.StatusCode.NOT_FOUND, "99"),
    ("", None, grpc.StatusCode.INVALID_ARGUMENT, "model_spec.name is required"),
])
def test_unknown_models_and_versions(toy_stub: Any, method: str, model: str, version: int | None,
                                     code: grpc.StatusCode, fragment: str) -> None:
    request = examples_request(method, [{"x": 1.0}], model=model)
    if version is not None:
        request.model_spec.version.value = version
    error = rpc_error(getattr(toy_stub, method.capitalize()), request)
    assert error.code() == code and fragment in error.details()


def test_too_many_examples_are_refused_like_a_big_batch(toy_server: ServingServer, toy_stub: Any) -> None:
    rows = toy_server.core.limits.max_batch_rows + 1
    error = rpc_error(toy_stub.Regress, examples_request("regress", [{"x": 1.0}] * rows))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and f"batch of {rows} rows" in error.details()


def test_classify_and_regress_are_counted_in_metrics(toy_stub: Any, toy_http: httpx.Client) -> None:
    toy_stub.Classify(examples_request("classify", [{"x": 1.0}]), timeout=10)
    toy_stub.Regress(examples_request("regress", [{"x": 1.0}]), timeout=10)
    rpc_error(toy_stub.Regress, examples_request("regress", [{"x": 1.0}], signature="classify_x"))
    text = toy_http.get("/monitoring/prometheus/metrics").text
    for method, signature, status in [("classify", "classify_x", "OK"), ("regress", "regress_x", "OK"),
                                      ("regress", "classify_x", "INVALID_ARGUMENT")]:
        assert (f'serving_requests_total{{method="{method}",model="toy",protocol="grpc",signature="{signature}",'
                f'status="{status}",version="7"}}') in text


def _predict(x: np.ndarray, s: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    request.inputs["s"].CopyFrom(tf.make_tensor_proto(s))
    return request


@pytest.mark.parametrize("x,s,message", [
    (np.array([[1.0], [2.0]]), np.array([b"a", b"b"], dtype=object),
     "input 'x' has shape [2, 1], but the signature expects [-1] (-1: any size)"),
    (np.array(1.0), np.array([b"a"], dtype=object), "input 'x' has shape [], but the signature expects [-1]"),
    (np.array([1.0]), np.array([[b"a", b"b"]], dtype=object),
     "input 's' has shape [1, 2], but the signature expects [-1]"),
])
def test_predict_refuses_a_wrong_shape_before_the_model_runs(toy_stub: Any, x: np.ndarray, s: np.ndarray,
                                                             message: str) -> None:
    error = rpc_error(toy_stub.Predict, _predict(x, s))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(message), error.details()


def test_examples_calls_stay_out_of_the_request_log_as_over_rest(toy_server: ServingServer, toy_stub: Any,
                                                                 toy_http: httpx.Client) -> None:
    toy_stub.Classify(examples_request("classify", [{"x": 1.0}]), timeout=10)
    toy_http.post("/v1/models/toy:regress", json=_rest_body("regress", [{"x": 1.0}]))
    toy_stub.Predict(_predict(np.array([42.0]), np.array([b"end"], dtype=object)), timeout=10)  # written after them
    log_dir = Path(toy_server.options.request_log_dir)
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for f in log_dir.glob("*.jsonl") for line in f.read_text().splitlines()]
        if any(r["inputs"].get("x") == [42.0] for r in records):
            break
        assert time.monotonic() < deadline, "the predict call was not logged"
        time.sleep(0.05)
    assert {r["signature"] for r in records} == {"serving_default"}
    assert {(r["protocol"], r["signature"]) for r in records if r["inputs"].get("x") == [42.0]} == {
        ("grpc", "serving_default")}


class _OtherInputs(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def regress_named(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([], tf.float32, default_value=0.0)})["x"]
        return {"outputs": x}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs"),
                                  tf.TensorSpec([None], tf.string, name="more")])
    def regress_two(self, inputs: tf.Tensor, more: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": tf.zeros_like(tf.strings.length(inputs), tf.float32)}


@pytest.mark.parametrize("signature,message", [
    ("regress_named", "No regression inputs found in SignatureDef 'regress_named': its one input is 'examples'"),
    ("regress_two", "Expected one input Tensor."),
])
def test_a_regress_signature_must_take_one_input_named_inputs_as_in_tf_serving(tmp_path: Path, signature: str,
                                                                                message: str) -> None:
    """TF Serving's PreProcessRegression looks the input up as 'inputs': a model served here must be servable there."""
    from serving.testing import push, set_method_names

    module = _OtherInputs()
    model_dir = tmp_path / "model"
    tf.saved_model.save(module, str(model_dir), signatures={
        "regress_named": module.regress_named.get_concrete_function(),
        "regress_two": module.regress_two.get_concrete_function()})
    set_method_names(model_dir, {name: "tensorflow/serving/regress" for name in ("regress_named", "regress_two")})
    push(model_dir, tmp_path / "other", 1)
    opts = ServerOptions(models=[ModelSpec("other", str(tmp_path / "other"))], rest_port=0, grpc_port=0,
                         file_system_poll_wait_seconds=0)
    with ServingServer(opts) as srv, grpc.insecure_channel(srv.grpc_target) as channel:
        rest = httpx.post(f"{srv.url}/v1/models/other:regress", timeout=10,
                          json={"signature_name": signature, "examples": [{"x": 1.0}]})
        assert rest.status_code == 400 and rest.json()["error"].startswith(message), rest.text
        with pytest.raises(grpc.RpcError) as info:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Regress(
                examples_request("regress", [{"x": 1.0}], signature=signature, model="other"), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details().startswith(message)
