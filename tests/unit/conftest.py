"""The toy model served over gRPC and REST, shared by the gRPC test modules (Classify/Regress/Predict,
MultiInference), with builders of their requests."""
from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc, regression_pb2

from serving.config import ModelSpec
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy

SCALE = 3.0  # classify_x: p(yes) = sigmoid(x * SCALE); regress_x: x * SCALE


@pytest.fixture(scope="module")
def toy_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("grpc-examples")
    (root / "toy").mkdir()
    push_toy(root / "toy", 7, scale=SCALE)
    opts = ServerOptions(models=[ModelSpec("toy", str(root / "toy"))], rest_port=0, grpc_port=0,
                         file_system_poll_wait_seconds=0, request_log_dir=root / "log", request_log_sample_rate=1.0)
    with ServingServer(opts) as srv:
        yield srv


@pytest.fixture(scope="module")
def toy_stub(toy_server: ServingServer):
    with grpc.insecure_channel(toy_server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def toy_http(toy_server: ServingServer):
    with httpx.Client(base_url=toy_server.url, timeout=10) as client:
        yield client


def _example(features: dict[str, float], into: Any) -> None:
    for name, value in features.items():
        into.features.feature[name].float_list.value.append(value)


def examples_request(method: str, examples: list[dict[str, float]], context: dict[str, float] | None = None,
                     signature: str | None = None, model: str = "toy") -> Any:
    """The gRPC twin of the REST body {"signature_name", "context", "examples"}."""
    request = (classification_pb2.ClassificationRequest() if method == "classify"
               else regression_pb2.RegressionRequest())
    request.model_spec.name = model
    request.model_spec.signature_name = signature if signature is not None else f"{method}_x"
    if context is None:
        for features in examples:
            _example(features, request.input.example_list.examples.add())
    else:
        listed = request.input.example_list_with_context
        _example(context, listed.context)
        for features in examples:
            _example(features, listed.examples.add())
    return request


def rpc_error(call: Any, request: Any) -> grpc.RpcError:
    """The error a call answers (it must fail)."""
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value
