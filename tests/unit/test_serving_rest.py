"""REST mechanics of the local server on tiny models: versions, labels, formats, errors."""
from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.config import ModelSpec, VersionPolicy, render_model_config
from serving.core import Limits
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rest")
    base = root / "toy"
    base.mkdir()
    push_toy(base, 1, scale=1.0)
    push_toy(base, 2, scale=2.0)
    config = root / "models.config"
    config.write_text(render_model_config([ModelSpec("toy", "/unused", VersionPolicy("specific", versions=(1, 2)),
                                                     {"stable": 1, "canary": 2})]))
    options = ServerOptions(models=[], model_config_file=config, base_path_override={"toy": str(base)},
                            allow_version_labels_for_unavailable_models=True,
                            rest_port=0, grpc_port=None, file_system_poll_wait_seconds=0,
                            limits=Limits(max_body_bytes=200_000, max_batch_rows=100),
                            request_log_dir=root / "log", request_log_sample_rate=1.0)
    with ServingServer(options) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ServingServer):
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_status_lists_latest_and_labelled_versions(http: httpx.Client) -> None:
    body = http.get("/v1/models/toy").json()
    assert [(s["version"], s["state"]) for s in body["model_version_status"]] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
    # As TF Serving's GetModelStatus: a label is not read, every version is listed, even for an unknown label.
    for label in ("stable", "canary", "no_such_label"):
        assert http.get(f"/v1/models/toy/labels/{label}").json() == body
    assert http.get("/v1/models/toy/labels/stable/metadata").json()["model_spec"]["version"] == "1"
    assert http.get("/v1/models/toy/versions/2").json()["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.mark.parametrize("path,scale", [("", 2.0), ("/versions/1", 1.0), ("/labels/stable", 1.0), ("/labels/canary", 2.0)])
def test_predict_routes_to_the_named_version(http: httpx.Client, path: str, scale: float) -> None:
    resp = http.post(f"/v1/models/toy{path}:predict", json={"instances": [{"x": 1.5, "s": "ab"}]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"predictions": [{"n": 2, "y": 1.5 * scale}]}


def test_columnar_b64_and_nan(http: httpx.Client) -> None:
    s = {"b64": base64.b64encode("héllo".encode()).decode()}
    resp = http.post("/v1/models/toy/versions/1:predict", content='{"inputs": {"x": [NaN, 2], "s": [' + json.dumps(s) + ', ""]}}')
    assert resp.status_code == 200, resp.text
    assert resp.text.startswith('{"outputs":{"n":[5,0],"y":[NaN,2.0]')


def test_columnar_keys_outside_the_signature_are_ignored_as_in_tf_serving(http: httpx.Client) -> None:
    # FillTensorMapFromInputsMap reads the signature's inputs only; a row with an unknown key is refused.
    resp = http.post("/v1/models/toy/versions/1:predict", json={"inputs": {"x": [1.5], "s": ["ab"], "z": [1]}})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"outputs": {"n": [2], "y": [1.5]}}


def test_metadata_has_signatures(http: httpx.Client) -> None:
    meta = http.get("/v1/models/toy/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"]["inputs"]["x"]["dtype"] == "DT_DOUBLE"
    assert sigs["classify_x"]["method_name"] == "tensorflow/serving/classify"


def test_classify_and_regress(http: httpx.Client) -> None:
    body = {"signature_name": "classify_x", "context": {"x": 0.0}, "examples": [{}, {"x": 100.0}]}
    results = http.post("/v1/models/toy/versions/1:classify", json=body).json()["results"]
    assert results[0] == [["no", 0.5], ["yes", 0.5]] and results[1][1] == ["yes", 1.0]
    reg = http.post("/v1/models/toy/labels/canary:regress", json={"signature_name": "regress_x", "examples": [{"x": 3.0}]})
    assert reg.json() == {"results": [6.0]}
    wrong = http.post("/v1/models/toy:classify", json={"examples": [{"x": 1.0}]})
    assert wrong.status_code == 400 and "tensorflow/serving/classify" in wrong.json()["error"]


@pytest.mark.parametrize("verb", ["classify", "regress"])
@pytest.mark.parametrize("signature", ["matching", "serving_default"])
def test_an_empty_examples_list_answers_tf_servings_message(http: httpx.Client, verb: str, signature: str) -> None:
    """TF Serving reads the body before it looks at the signature (FillClassifyRegressRequestFromJson)."""
    body = {"signature_name": f"{verb}_x" if signature == "matching" else signature, "examples": []}
    resp = http.post(f"/v1/models/toy:{verb}", json=body)
    assert resp.status_code == 400 and resp.json() == {"error": "'examples' value is an empty array"}
    for wrong, message in (({"examples": {"x": 1.0}}, "Expecting 'examples' value to be an list/array"),
                           ({"examples": None}, "Expecting 'examples' value to be an list/array"),
                           ({"examples": None, "context": 5}, "Example must be JSON object but got JSON Number"),
                           ({"examples": [{"x": 1.0}, "x"]}, "Example must be JSON object but got JSON String"),
                           ({"examples": [{"x": 1.0}], "context": None}, "Example must be JSON object but got JSON Null")):
        resp = http.post(f"/v1/models/toy:{verb}", json={**body, **wrong})  # context is read first, as there
        assert resp.status_code == 400 and resp.json() == {"error": message}
    resp = http.post(f"/v1/models/toy:{verb}", json={"signature_name": body["signature_name"]})
    assert resp.json() == {"error": "When method is classify, key 'examples' is expected and was not found"}


@pytest.mark.parametrize("method,path,body,status,fragment", [
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/models/toy/versions/9", None, 404, "version 9"),
    ("GET", "/v1/models/toy/labels/beta/metadata", None, 400, "Unrecognized servable version label: beta"),
    ("GET", "/v1/models/toy/versions/abc", None, 400, "Malformed"),
    ("GET", "/v1/models/toy/versions/0", None, 404, "Could not find version 0 of model toy"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("DELETE", "/v1/models/toy", None, 400, "Malformed request: DELETE /v1/models/toy"),
    ("PUT", "/v1/models/toy:predict", {"instances": [{"x": 1, "s": ""}]}, 400, "Malformed request: PUT"),
    ("OPTIONS", "/v1/models/toy", None, 400, "Malformed request: OPTIONS"),
    ("POST", "/v1/models/toy:Explode", {}, 400, "Malformed"),
    ("POST", "/v1/models/toy:predict", {"signature_name": None, "instances": [{"x": 1, "s": ""}]}, 400,
     "'signature_name' key must be a string value"),
    ("POST", "/v1/models/toy/versions/9:predict", {"instances": [{"x": 1, "s": ""}]}, 404, "Specific(toy, 9)"),
    ("POST", "/v1/models/toy:explode", {}, 400, "Malformed"),
    ("POST", "/v1/models/toy:predict", b'{"instances": [', 400, "JSON"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": "a", "s": ""}]}, 400, "'x' expects numbers (DT_DOUBLE)"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": 1, "s": 3}]}, 400, "'s' expects strings"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": 1}]}, 400, "missing input 's'"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": 1, "s": "", "z": 1}]}, 400, "unknown input 'z'"),
    ("POST", "/v1/models/toy:predict", {"inputs": {"x": [1]}}, 400, "missing input 's'"),
    ("POST", "/v1/models/toy:predict", {"inputs": {"x": [1, 2], "s": [""]}}, 400, "different batch sizes"),
    ("POST", "/v1/models/toy:predict", {"inputs": {"x": [[1]], "s": [""]}}, 400, "shape"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": 1, "s": ""}], "inputs": {}}, 400, "exactly one"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "nah", "instances": [{"x": 1}]}, 400, "nah"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": 1, "s": ""}] * 101}, 400, "maximum of 100"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": 1, "s": "a" * 300_000}]}, 413, "limit"),
    ("POST", "/v1/models/toy:predict", {"instances": [{"x": 1, "s": "no!"}]}, 400, "model rejected the input: assertion failed: [s must not contain"),
    ("GET", "/nowhere", None, 404, "Not Found"),
    # TF Serving's handler takes (?i)/v1/.*: what it cannot route there is malformed (was 405 and 404 Not Found)
    ("POST", "/v1/models", {}, 400, "Malformed request: POST /v1/models"),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("POST", "/V1/foo/bar", {}, 400, "Malformed request: POST /V1/foo/bar"),
    ("GET", "/v1/modelsx", None, 400, "Malformed request: GET /v1/modelsx"),
    # a lone UTF-16 surrogate, which a JSON escape can spell: the client's error (it was a 500 counted against the
    # version, and so against a canary's health)
    ("POST", "/v1/models/toy:predict", b'{"instances": [{"x": 1, "s": "\\ud800"}]}', 400, "not valid Unicode"),
])
def test_errors_are_json_with_tf_serving_codes(http: httpx.Client, method: str, path: str, body: object,
                                               status: int, fragment: str) -> None:
    content = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
    resp = http.request(method, path, content=content)
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["error"]


def test_metrics_count_requests(http: httpx.Client) -> None:
    http.post("/v1/models/toy:predict", json={"instances": [{"x": 1, "s": ""}]})
    text = http.get("/monitoring/prometheus/metrics").text
    assert 'serving_requests_total{method="predict",model="toy",protocol="rest",signature="serving_default",status="OK",version="2"}' in text
    assert "serving_request_latency_seconds_bucket" in text



def test_paths_are_case_insensitive_like_tf_serving_but_names_are_not(http: httpx.Client) -> None:
    row = {"instances": [{"x": 1, "s": ""}]}
    assert http.post("/V1/Models/toy/Versions/2:PREDICT", json=row).json() == http.post("/v1/models/toy:predict",
                                                                                          json=row).json()
    assert http.get("/v1/MODELS/toy/METADATA").json()["model_spec"]["name"] == "toy"
    assert http.get("/V1/models/toy").status_code == 200
    assert http.post("/v1/models/TOY:predict", json=row).status_code == 404  # the model name keeps its case
    assert http.head("/v1/models/toy").status_code == 400  # any method but GET and POST, as TF Serving


def test_made_up_model_and_signature_names_do_not_become_metric_series(http: httpx.Client) -> None:
    for i in range(20):
        http.post(f"/v1/models/m{i}{'x' * 500}:predict", json={"instances": [{"x": 1, "s": ""}]})
        http.post("/v1/models/toy:classify", json={"signature_name": f"zz{i}", "examples": [{"x": 1.0}]})
    text = http.get("/monitoring/prometheus/metrics").text
    assert "xxxx" not in text and 'signature="zz' not in text
    assert 'model="<unknown>"' in text and 'status="NOT_FOUND"' in text  # still counted, under one series


def test_request_log_is_written(server: ServingServer, http: httpx.Client) -> None:
    http.post("/v1/models/toy:predict", json={"instances": [{"x": 4.0, "s": "q"}]})
    server.request_log.close()
    records = [json.loads(line) for f in Path(server.options.request_log_dir).glob("*.jsonl") for line in f.read_text().splitlines()]
    assert {"model": "toy", "version": 2, "inputs": {"s": ["q"], "x": [4.0]}, "outputs": {"n": [1], "y": [8.0]}}.items() <= {
        k: v for r in records if r["inputs"]["x"] == [4.0] for k, v in r.items()}.items()


def test_a_stalled_body_times_out_with_408_and_the_server_keeps_serving(tmp_path: Path) -> None:
    base = tmp_path / "toy"
    push_toy(base, 1, scale=3.0)
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=None,
                            file_system_poll_wait_seconds=0, limits=Limits(body_timeout_s=0.5))
    with ServingServer(options) as srv:
        with socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10) as sock:
            sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"instances\"")  # and then nothing
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"timed out reading the request body" in reply
        resp = httpx.post(f"{srv.url}/v1/models/toy:predict", json={"instances": [{"x": 2.0, "s": "ab"}]}, timeout=10)
        assert resp.status_code == 200 and resp.json()["predictions"][0]["y"] == 6.0


@pytest.mark.parametrize("head", [b"Content-Length: ten", b"Content-Length: 5\r\nContent-Length: 6",
                                  b"Bad Header Line"])
def test_a_request_head_that_does_not_parse_is_a_json_400_and_the_server_keeps_serving(
        server: ServingServer, http: httpx.Client, head: bytes) -> None:
    """Clients parse every error body as {"error": ...}; uvicorn answered these in plain text."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: t\r\n" + head + b"\r\n\r\n{}")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status, _, rest = reply.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in headers.lower(), reply
    assert json.loads(body) == {"error": "Invalid HTTP request received."}
    assert http.post("/v1/models/toy:predict", json={"instances": [{"x": 1.0, "s": "a"}]}).status_code == 200


def test_a_client_that_hangs_up_mid_body_is_counted_cancelled_not_internal(server: ServingServer,
                                                                           http: httpx.Client) -> None:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"instances\"")  # and hangs up
    deadline = time.monotonic() + 10
    while 'status="CANCELLED"' not in (text := http.get("/monitoring/prometheus/metrics").text):
        assert time.monotonic() < deadline, "the hang-up was not counted"
        time.sleep(0.05)
    assert 'status="INTERNAL"' not in text
    assert http.post("/v1/models/toy:predict", json={"instances": [{"x": 1.0, "s": "a"}]}).status_code == 200


@pytest.mark.parametrize("x,error", [
    ("1e400", "JSON Parse error: Number too big to be stored in double"),  # Python's json would make it inf
    ("-1e400", "JSON Parse error: Number too big to be stored in double"),
    ("9007199254740993", "Cannot convert JSON value: 9007199254740993 to double without loss of precision"),
    ("Infinity", None), ("-Infinity", None), ("NaN", None), ("1e-400", None), ("12345.5", None),
])
def test_numbers_are_read_as_tf_serving_reads_them(http: httpx.Client, x: str, error: str | None) -> None:
    resp = http.post("/v1/models/toy/versions/1:predict", content=f'{{"instances": [{{"x": {x}, "s": "a"}}]}}')
    if error is None:
        assert resp.status_code == 200, resp.text
        y = resp.json()["predictions"][0]["y"]
        assert (y != y) if x == "NaN" else y == float(np.float32(float(x)))  # y is a float32 output
    else:
        assert resp.status_code == 400 and error in resp.json()["error"], resp.text


@pytest.mark.parametrize("value,fits", [("1e39", False), ("16777216", False), ("3.4e38", True), ("16777215", True),
                                        ("Infinity", True), ("1e-50", True)])
def test_float32_inputs_refuse_values_they_cannot_hold(value: str, fits: bool) -> None:
    import tensorflow as tf

    from serving.codec import TensorSpec, loads, to_array
    from serving.errors import ServingError

    spec = TensorSpec("x", tf.float32, (-1,))
    if fits:
        assert to_array(loads(f"[{value}]".encode()), spec).tolist() == [np.float32(float(value))]
    else:
        with pytest.raises(ServingError, match="to float without loss of precision"):
            to_array(loads(f"[{value}]".encode()), spec)


@pytest.mark.parametrize("x,error", [
    ("[1.5, 2]", "Unexpected element type in feature: x expecting type: float"),  # TF Serving's kinds, no mixing
    ("[true]", None),  # a boolean is an int64 feature; parse_example then refuses it for a float feature
    ("null", "Feature: x has element with unexpected JSON type: null"),
    ("1e39", "Feature: x: Cannot convert JSON value: 1e+39 to float without loss of precision"),
    ("1e400", "JSON Parse error: Number too big to be stored in double"),
    ("9223372036854775808", "Feature: x has uint64 element. Only int64 is supported."),
    ("1" + "0" * 60, f"Feature: x: Cannot convert JSON value: 1{'0' * 60} to float without loss of precision"),
])
def test_example_features_are_typed_as_tf_serving_types_them(http: httpx.Client, x: str, error: str | None) -> None:
    body = f'{{"signature_name": "regress_x", "examples": [{{"x": {x}}}]}}'
    resp = http.post("/v1/models/toy/versions/1:regress", content=body)
    assert resp.status_code == 400, resp.text
    if error is not None:
        assert resp.json()["error"] == error
    assert http.post("/v1/models/toy/versions/1:regress", content=body.replace(x, "2.5")).json() == {"results": [2.5]}


def _gzip_post(http: httpx.Client, content: bytes, encoding: str = "gzip") -> httpx.Response:
    return http.post("/v1/models/toy/versions/1:predict", content=content, headers={"content-encoding": encoding})


def test_gzip_bodies_are_uncompressed_within_the_body_limit(http: httpx.Client) -> None:
    body = b'{"instances": [{"x": 2.5, "s": "ab"}]}'
    want = {"predictions": [{"n": 2, "y": 2.5}]}
    assert _gzip_post(http, gzip.compress(body)).json() == want
    assert _gzip_post(http, gzip.compress(body[:9]) + gzip.compress(body[9:])).json() == want  # two members
    assert _gzip_post(http, body, "identity").json() == want
    # a small upload that inflates past --max-body-bytes (200,000 here) is refused like a large one
    bomb = gzip.compress(body[:-2] + b" " * 300_000 + body[-2:])
    assert len(bomb) < 200_000
    resp = _gzip_post(http, bomb)
    assert resp.status_code == 413 and "uncompressed request body exceeds the limit" in resp.json()["error"]
    for content, encoding, error in [(body, "gzip", "not valid gzip"), (gzip.compress(body)[:-8], "gzip", "truncated"),
                                     (body, "br", "Content-Encoding 'br' is not supported")]:
        resp = _gzip_post(http, content, encoding)
        assert resp.status_code == 400 and error in resp.json()["error"], resp.text


def test_a_connection_whose_request_head_stalls_is_closed(tmp_path: Path) -> None:
    base = tmp_path / "toy"
    push_toy(base, 1)
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=None,
                            file_system_poll_wait_seconds=0, limits=Limits(head_timeout_s=0.5))
    with ServingServer(options) as srv:
        silent = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10)
        partial = socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10)
        partial.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: t\r\n")  # and no more headers
        start = time.monotonic()
        assert silent.recv(100) == b"" and partial.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < 5
        silent.close()
        partial.close()
        with httpx.Client(base_url=srv.url, timeout=10) as client:  # an idle keep-alive connection is not cut
            row = {"instances": [{"x": 1.0, "s": "a"}]}
            assert client.post("/v1/models/toy:predict", json=row).status_code == 200
            time.sleep(1.0)
            assert client.post("/v1/models/toy:predict", json=row).status_code == 200


def test_a_request_cut_by_shutdown_gets_a_json_503(tmp_path: Path) -> None:
    base = tmp_path / "toy"
    push_toy(base, 1)
    options = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=None,
                            file_system_poll_wait_seconds=0, shutdown_grace_seconds=0.5)
    srv = ServingServer(options).start()
    with socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"inst")
        time.sleep(0.2)
        stopping = threading.Thread(target=srv.stop)
        stopping.start()
        reply = sock.recv(65536)
        stopping.join()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), reply[:200]
    assert json.loads(body) == {"error": "the server is shutting down; send the request again"}
