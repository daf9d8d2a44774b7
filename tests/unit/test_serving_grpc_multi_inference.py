"""gRPC MultiInference against a real local toy_server: classify and regress tasks on one Input, as TF Serving."""
from __future__ import annotations

from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import inference_pb2

from tests.unit.conftest import SCALE, examples_request, rpc_error

CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


def _multi(tasks: list[tuple[str, str]], examples: list[dict[str, float]], context: dict[str, float] | None = None,
           model: str = "toy") -> inference_pb2.MultiInferenceRequest:
    """One task per (signature_name, method_name), all on the same examples."""
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = model, signature
    request.input.CopyFrom(examples_request("regress", examples, context).input)  # the Input Classify/Regress send
    return request


CASES = [
    pytest.param([{"x": 0.0}, {"x": 1.0}, {"x": -2.0}], None, id="example_list"),
    pytest.param([{}, {"x": 1.0}], {"x": -0.5}, id="with_context"),
]


@pytest.mark.parametrize("examples,context", CASES)
def test_classify_and_regress_tasks_answer_as_separate_calls(toy_stub: Any, examples: list,
                                                              context: dict | None) -> None:
    request = _multi([("classify_x", CLASSIFY), ("regress_x", REGRESS)], examples, context)
    response = toy_stub.MultiInference(request, timeout=10)
    classified = toy_stub.Classify(examples_request("classify", examples, context), timeout=10)
    regressed = toy_stub.Regress(examples_request("regress", examples, context), timeout=10)
    first, second = response.results
    assert first.WhichOneof("result") == "classification_result"
    assert first.classification_result == classified.result and first.classification_result.classifications
    assert second.WhichOneof("result") == "regression_result"
    assert second.regression_result == regressed.result and second.regression_result.regressions
    assert [(r.model_spec.name, r.model_spec.version.value, r.model_spec.signature_name) for r in response.results] == [
        ("toy", 7, "classify_x"), ("toy", 7, "regress_x")]


def test_results_follow_the_order_of_the_tasks(toy_stub: Any) -> None:
    request = _multi([("regress_x", REGRESS), ("classify_x", CLASSIFY)], [{"x": 2.0}])
    response = toy_stub.MultiInference(request, timeout=10)
    assert [r.WhichOneof("result") for r in response.results] == ["regression_result", "classification_result"]
    assert response.results[0].regression_result.regressions[0].value == pytest.approx(2.0 * SCALE)
    p = 1 / (1 + np.exp(-2.0 * SCALE))
    scores = [c.score for c in response.results[1].classification_result.classifications[0].classes]
    assert scores == pytest.approx([1 - p, p], abs=1e-6)  # float32 scores


def test_the_first_task_picks_the_version_for_all(toy_stub: Any) -> None:
    request = _multi([("classify_x", CLASSIFY), ("regress_x", REGRESS)], [{"x": 1.0}])
    request.tasks[1].model_spec.version.value = 99  # read by nobody, as in TF Serving
    assert [r.model_spec.version.value for r in toy_stub.MultiInference(request, timeout=10).results] == [7, 7]
    request.tasks[0].model_spec.version.value = 99
    error = rpc_error(toy_stub.MultiInference, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "99" in error.details()


def _with_other_model_in_second_task(model: str) -> inference_pb2.MultiInferenceRequest:
    request = _multi([("classify_x", CLASSIFY), ("regress_x", REGRESS)], [{"x": 1.0}])
    request.tasks[1].model_spec.name = model
    return request


@pytest.mark.parametrize("request_,code,message", [
    pytest.param(_multi([], [{"x": 1.0}]), grpc.StatusCode.INVALID_ARGUMENT,
                 "ModelSpec has no name specified. (the request has no tasks)", id="no_tasks"),
    pytest.param(_with_other_model_in_second_task(""), grpc.StatusCode.INVALID_ARGUMENT,
                 "Found ModelSpec with an empty model name.", id="empty_model_name"),
    pytest.param(_with_other_model_in_second_task("other"), grpc.StatusCode.INVALID_ARGUMENT,
                 "All ModelSpecs in a MultiInferenceRequest must access the same model name.", id="two_models"),
    pytest.param(_multi([("regress_x", REGRESS), ("regress_x", REGRESS)], [{"x": 1.0}]),
                 grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x", id="duplicate"),
    pytest.param(_multi([("", CLASSIFY)], [{"x": 1.0}]), grpc.StatusCode.INVALID_ARGUMENT,
                 "Expected classification signature method_name to be tensorflow/serving/classify. "
                 "Was: tensorflow/serving/predict (signature 'serving_default')", id="no_signature_is_the_default"),
    pytest.param(_multi([("nope", REGRESS)], [{"x": 1.0}]), grpc.StatusCode.INVALID_ARGUMENT,
                 "Requested signature not found in model graph: nope", id="unknown_signature"),
    pytest.param(_multi([("classify_x", CLASSIFY), ("regress_x", CLASSIFY)], [{"x": 1.0}]),
                 grpc.StatusCode.INVALID_ARGUMENT,
                 "Expected classification signature method_name to be tensorflow/serving/classify. "
                 "Was: tensorflow/serving/regress (signature 'regress_x')", id="method_not_the_signatures"),
    pytest.param(_multi([("serving_default", "tensorflow/serving/predict")], [{"x": 1.0}]),
                 grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict",
                 id="predict_task"),
    pytest.param(_multi([("classify_x", CLASSIFY)], []), grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.",
                 id="empty_input"),
    # every task is checked before the input, as in TF Serving
    pytest.param(_multi([("classify_x", CLASSIFY), ("regress_x", CLASSIFY)], []), grpc.StatusCode.INVALID_ARGUMENT,
                 "Expected classification signature method_name to be tensorflow/serving/classify. "
                 "Was: tensorflow/serving/regress (signature 'regress_x')", id="tasks_before_input"),
])
def test_bad_requests_answer_tf_servings_code_and_message(toy_stub: Any, request_: Any, code: grpc.StatusCode,
                                                          message: str) -> None:
    error = rpc_error(toy_stub.MultiInference, request_)
    assert (error.code(), error.details()) == (code, message)


def test_unknown_model_is_not_found(toy_stub: Any) -> None:
    error = rpc_error(toy_stub.MultiInference, _multi([("regress_x", REGRESS)], [{"x": 1.0}], model="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "nope" in error.details()


def test_too_many_examples_are_refused_like_a_big_batch(toy_server: Any, toy_stub: Any) -> None:
    rows = toy_server.core.limits.max_batch_rows + 1
    error = rpc_error(toy_stub.MultiInference, _multi([("regress_x", REGRESS)], [{"x": 1.0}] * rows))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and f"batch of {rows} rows" in error.details()


def test_multi_inference_is_counted_in_metrics(toy_stub: Any, toy_http: httpx.Client) -> None:
    toy_stub.MultiInference(_multi([("classify_x", CLASSIFY), ("regress_x", REGRESS)], [{"x": 1.0}]), timeout=10)
    rpc_error(toy_stub.MultiInference, _multi([("classify_x", REGRESS)], [{"x": 1.0}]))
    text = toy_http.get("/monitoring/prometheus/metrics").text
    assert ('serving_requests_total{method="multi_inference",model="toy",protocol="grpc",'
            'signature="classify_x,regress_x",status="OK",version="7"}') in text
    assert ('serving_requests_total{method="multi_inference",model="toy",protocol="grpc",'
            'signature="",status="INVALID_ARGUMENT",version="7"}') in text
