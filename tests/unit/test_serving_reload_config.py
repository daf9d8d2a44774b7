"""ModelService.HandleReloadConfigRequest: a new config over gRPC, taken or refused whole as TF Serving does."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from serving.config import ModelSpec, VersionPolicy, render_model_config
from serving.server import ServerOptions, ServingServer
from serving.testing import eventually, push_toy

ROW = {"instances": [{"x": 1.0, "s": ""}]}


def _request(text: str) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return request


def _config(*specs: ModelSpec) -> model_management_pb2.ReloadConfigRequest:
    return _request(render_model_config(list(specs)))


@pytest.fixture()
def served(tmp_path: Path):
    base = tmp_path / "toy"
    for v in (1, 2):
        push_toy(base, v, scale=float(v))
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=0,
                            file_system_poll_wait_seconds=0)  # no poller: whatever loads, the RPC loaded
    with ServingServer(options) as server, grpc.insecure_channel(server.grpc_target) as channel, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        yield base, model_service_pb2_grpc.ModelServiceStub(channel), http


def _y(http: httpx.Client, path: str) -> float | int:
    answer = http.post(f"/v1/models/{path}:predict", json=ROW)
    return answer.json()["predictions"][0]["y"] if answer.status_code == 200 else answer.status_code


def test_a_label_needs_its_version_loaded_so_it_takes_two_reloads(served) -> None:
    base, stub, http = served
    both = VersionPolicy("specific", versions=(1, 2))
    with pytest.raises(grpc.RpcError) as refused:
        stub.HandleReloadConfigRequest(_config(ModelSpec("toy", str(base), both, {"stable": 1})), timeout=30)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == ("Request to assign label to version 1 of model toy, "
                                       "which is not currently available for inference")
    assert _y(http, "toy/versions/1") == 404  # refused whole: the policy part was not taken either

    answer = stub.HandleReloadConfigRequest(_config(ModelSpec("toy", str(base), both)), timeout=30)
    assert answer.status.error_code == 0
    # A model already served loads its versions after the answer, as in TF Serving (only new models are waited for)
    assert eventually(lambda: _y(http, "toy/versions/1") == 1.0)
    stub.HandleReloadConfigRequest(_config(ModelSpec("toy", str(base), both, {"stable": 1})), timeout=30)
    assert _y(http, "toy/labels/stable") == 1.0


def test_added_models_are_loaded_before_the_answer_and_left_out_ones_unloaded(served, tmp_path: Path) -> None:
    base, stub, http = served
    other = tmp_path / "other"
    push_toy(other, 7, scale=7.0)
    request = _config(ModelSpec("toy", str(base)), ModelSpec("other", str(other)))
    request.metric_names.extend(["serving_model_events_total", "/tensorflow/serving/not_kept_here"])
    answer = stub.HandleReloadConfigRequest(request, timeout=30)
    assert _y(http, "other") == 7.0 and _y(http, "toy") == 2.0
    # each asked metric's increase over the reload: one load event (other v7); 0 for a name not exported
    assert [(m.name, m.int64_value_increase) for m in answer.metric] == [
        ("serving_model_events_total", 1), ("/tensorflow/serving/not_kept_here", 0)]
    stub.HandleReloadConfigRequest(_config(ModelSpec("other", str(other))), timeout=30)
    assert _y(http, "toy") == 404 and _y(http, "other") == 7.0
    assert http.get("/v1/models/toy").json()["model_version_status"][0]["state"] == "END"

    # a label on a model the server does not serve is an unknown label, as TF Serving looks the label up first
    answer = http.post("/v1/models/toy/labels/stable:predict", json=ROW)
    assert (answer.status_code, answer.json()) == (400, {"error": "Unrecognized servable version label: stable"})
    stub.HandleReloadConfigRequest(_config(ModelSpec("other", f"file://{other}")), timeout=30)  # a file:// URI
    assert _y(http, "other") == 7.0

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(grpc.RpcError) as waited:  # no version: waited for, as TF Serving does, until the deadline
        stub.HandleReloadConfigRequest(_config(ModelSpec("other", str(other)), ModelSpec("new", str(empty))),
                                       timeout=1)
    assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    push_toy(empty, 3, scale=3.0)  # the config was taken: the model is polled like any other
    stub.HandleReloadConfigRequest(_config(ModelSpec("other", str(other)), ModelSpec("new", str(empty))), timeout=30)
    assert eventually(lambda: _y(http, "new") == 3.0)


def test_an_added_model_is_waited_for_until_its_first_version_loads_or_fails(tmp_path: Path) -> None:
    base, late, broken = tmp_path / "toy", tmp_path / "late", tmp_path / "broken"
    push_toy(base, 1)
    late.mkdir()
    (broken / "4").mkdir(parents=True)
    (broken / "4" / "saved_model.pb").write_bytes(b"not a SavedModel")
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=0,
                            file_system_poll_wait_seconds=0.2)
    with ServingServer(options) as server, grpc.insecure_channel(server.grpc_target) as channel, \
            httpx.Client(base_url=server.url, timeout=10) as http:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        pushing = threading.Timer(1.0, push_toy, (late, 5), {"scale": 5.0})
        pushing.start()
        started = time.monotonic()
        answer = stub.HandleReloadConfigRequest(_config(ModelSpec("toy", str(base)), ModelSpec("late", str(late))),
                                                timeout=30)
        pushing.join()
        assert answer.status.error_code == 0 and time.monotonic() - started >= 1.0
        assert _y(http, "late") == 5.0  # answered once the version pushed during the wait was loaded

        with pytest.raises(grpc.RpcError) as failed:  # a failed load ends the wait at once
            stub.HandleReloadConfigRequest(_config(ModelSpec("toy", str(base)), ModelSpec("late", str(late)),
                                                   ModelSpec("broken", str(broken))), timeout=30)
        assert failed.value.code() == grpc.StatusCode.UNKNOWN
        assert failed.value.details().startswith("1 model(s) did not become available: {{broken: "), failed.value.details()


@pytest.mark.parametrize("text,message", [
    ("", "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported"),
    ("custom_model_config {}", "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                               "Only ModelConfigList is currently supported"),
    ("model_config_list { config { name: 'toy' base_path: 'models/toy' } }",
     "Expected model toy to have an absolute path or URI; got base_path()=models/toy"),
    ("model_config_list { config { name: 'toy' base_path: '/a' } config { name: 'toy' base_path: '/b' } }",
     "Illegal to list model toy multiple times in config list"),
    ("model_config_list { config { name: 'toy' base_path: 'gs://bucket/toy' } }",  # said, not served empty
     "model 'toy': base_path gs://bucket/toy: this server reads local folders (absolute paths, file:// URIs); "
     "TF Serving reads other file systems"),
])
def test_configs_tf_serving_refuses_are_invalid_argument_and_change_nothing(served, text: str, message: str) -> None:
    _base, stub, http = served
    with pytest.raises(grpc.RpcError) as refused:
        stub.HandleReloadConfigRequest(_request(text), timeout=30)
    assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert _y(http, "toy") == 2.0
