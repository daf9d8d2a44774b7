"""gRPC services and the client library against a real local server on a tiny model."""
from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.__main__ import main
from serving.client import ServingClient, ServingClientError
from serving.config import ModelSpec
from serving.core import Limits
from serving.server import ServerOptions, ServingServer
from serving.testing import push_toy


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("grpc") / "toy"
    base.mkdir()
    push_toy(base, 7, scale=3.0)
    opts = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=0, file_system_poll_wait_seconds=0)
    with ServingServer(opts) as srv:
        yield srv


@pytest.fixture(scope="module")
def channel(server: ServingServer):
    with grpc.insecure_channel(server.grpc_target) as ch:
        yield ch


def test_grpc_predict(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0])))
    req.inputs["s"].CopyFrom(tf.make_tensor_proto(np.array([b"ab", b""], dtype=object)))
    resp = stub.Predict(req, timeout=10)
    assert resp.model_spec.version.value == 7
    assert tf.make_ndarray(resp.outputs["y"]).tolist() == [3.0, 6.0]
    assert tf.make_ndarray(resp.outputs["n"]).tolist() == [2, 0]


@pytest.mark.parametrize("x_proto,s_proto,want_y", [
    # typed value fields (what make_tensor_proto writes for one value), one row
    (tf.make_tensor_proto(np.array([1.5])), tf.make_tensor_proto(np.array([b"abc"], dtype=object)), [4.5]),
    # tensor_content (what make_tensor_proto writes for several values)
    (tf.make_tensor_proto(np.array([1.0, -2.0, 0.5])), tf.make_tensor_proto(np.array([b"a", b"", b"xy"], dtype=object)),
     [3.0, -6.0, 1.5]),
    # one value broadcast to the declared shape, as TensorProto allows
    (tf.make_tensor_proto(2.0, dtype=tf.float64, shape=[2]), tf.make_tensor_proto([b"q", b"rs"]), [6.0, 6.0]),
])
def test_grpc_tensor_encodings(channel: grpc.Channel, x_proto, s_proto, want_y: list[float]) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.inputs["x"].CopyFrom(x_proto)
    req.inputs["s"].CopyFrom(s_proto)
    resp = stub.Predict(req, timeout=10)
    y, n = tf.make_ndarray(resp.outputs["y"]), tf.make_ndarray(resp.outputs["n"])
    assert y.dtype == np.float32 and y.tolist() == want_y
    assert n.dtype == np.int32 and n.tolist() == [len(v) for v in tf.make_ndarray(s_proto).tolist()]


def test_grpc_truncated_tensor_content_is_invalid_argument(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0, 2.0])))
    req.inputs["x"].tensor_content = req.inputs["x"].tensor_content[:-3]
    req.inputs["s"].CopyFrom(tf.make_tensor_proto(np.array([b"ab", b""], dtype=object)))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'x'" in info.value.details()


@pytest.mark.parametrize("mutate,code", [
    (lambda r: setattr(r.model_spec, "name", "nope"), grpc.StatusCode.NOT_FOUND),
    (lambda r: r.model_spec.version.__setattr__("value", 99), grpc.StatusCode.NOT_FOUND),
    # As ServerCore: an unknown label is INVALID_ARGUMENT, not NOT_FOUND.
    (lambda r: setattr(r.model_spec, "version_label", "stable"), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1], dtype=np.int32))), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs.pop("s"), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: setattr(r.model_spec, "signature_name", "nah"), grpc.StatusCode.INVALID_ARGUMENT),
    # named twice: answered OK with a [1, 1] shape over 1 value, which make_ndarray could not read
    (lambda r: r.output_filter.extend(["y", "y"]), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_grpc_errors(channel: grpc.Channel, mutate, code: grpc.StatusCode) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "toy"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0])))
    req.inputs["s"].CopyFrom(tf.make_tensor_proto(np.array([b""], dtype=object)))
    mutate(req)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=10)
    assert info.value.code() == code and info.value.details()


def test_grpc_metadata_and_status(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "toy"
    resp = stub.GetModelMetadata(req, timeout=10)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sig_map)
    assert set(sig_map.signature_def) == {"serving_default", "classify_x", "regress_x"}
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "toy"}), timeout=10)
    (row,) = status.model_version_status
    assert row.version == 7 and row.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_client_fills_missing_values(server: ServingServer, protocol: str) -> None:
    with ServingClient(server.url, "toy", protocol=protocol, grpc_target=server.grpc_target) as client:
        out = client.predict([{"x": 2.0, "s": "abc"}, {"x": None, "s": None}, {}])
    assert out[0] == {"y": 6.0, "n": 3}
    assert math.isnan(out[1]["y"]) and out[1]["n"] == 0 and out[2]["n"] == 0


def test_client_errors_carry_server_message(server: ServingServer) -> None:
    with ServingClient(server.url, "toy", version=99) as client:
        with pytest.raises(ServingClientError) as info:
            client.predict([{"x": 1.0}])
    assert info.value.status == 404 and "99" in info.value.message
    with ServingClient(server.url, "toy") as client:
        with pytest.raises(ServingClientError) as info:
            client.predict([{"x": "not a number", "s": ""}])
    assert info.value.status == 400 and "'x' expects numbers" in info.value.message


@pytest.mark.parametrize("bad,message", [
    ({"x": "1.5"}, "input 'x' expects numbers (DT_DOUBLE), got the string '1.5'"),  # not read as 1.5
    ({"x": True}, "input 'x' expects numbers (DT_DOUBLE), got a boolean"),  # not sent as 1.0
    ({"s": 5}, "input 's' expects strings (DT_STRING), got the number 5"),  # not sent as "5"
    ({"x": [1.0]}, "input 'x' is a ragged list; every row must have the same shape"),  # not a [2, 1] tensor
])
def test_client_refuses_a_value_of_the_wrong_type_alike_over_both_protocols(server: ServingServer, bad: dict,
                                                                              message: str) -> None:
    errors = {}
    for protocol in ("rest", "grpc"):
        with ServingClient(server.url, "toy", protocol=protocol, grpc_target=server.grpc_target) as client:
            with pytest.raises(ServingClientError) as info:
                client.predict([{"x": 1.0, "s": "ok"}, {"x": 2.0, "s": "ok", **bad}])
        errors[protocol] = (info.value.status, info.value.message, info.value.sent)
    # over gRPC the client refuses it with the server's own rules, before sending: sent=False says so
    assert errors == {"rest": (400, message, True), "grpc": ("INVALID_ARGUMENT", message, False)}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_an_object_in_the_first_row_is_named_an_object(server: ServingServer, protocol: str) -> None:
    """In the first row it was named "a list" (the whole column was taken for one value); in a later one, an object."""
    with ServingClient(server.url, "toy", protocol=protocol, grpc_target=server.grpc_target) as client:
        with pytest.raises(ServingClientError) as info:
            client.predict([{"x": {"a": 1}, "s": "ok"}])
    assert info.value.message == "input 'x' expects numbers (DT_DOUBLE), got an object"


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_client_sends_infinities_and_refuses_inexact_numbers_alike(server: ServingServer, protocol: str) -> None:
    with ServingClient(server.url, "toy", protocol=protocol, grpc_target=server.grpc_target) as client:
        assert [r["y"] for r in client.predict([{"x": math.inf, "s": "a"}, {"x": -math.inf, "s": "a"}])] == [
            math.inf, -math.inf]
        with pytest.raises(ServingClientError, match="9007199254740993 to double without loss of precision"):
            client.predict([{"x": 9007199254740993, "s": "a"}])


@pytest.mark.parametrize("bad,kind", [({"s": b"ab"}, "bytes"), ({"x": np.int64(3)}, "int64")])
def test_client_refuses_values_json_cannot_carry_over_both_protocols(server: ServingServer, bad: dict,
                                                                      kind: str) -> None:
    (name,) = bad
    for protocol in ("rest", "grpc"):
        with ServingClient(server.url, "toy", protocol=protocol, grpc_target=server.grpc_target) as client:
            with pytest.raises(ValueError, match=f"^row 1: feature '{name}' is {kind}; send str, int, float"):
                client.predict([{"x": 1.0, "s": "ok"}, {"x": 2.0, "s": "ok", **bad}])


def test_client_retries_then_reports_connection_errors() -> None:
    with ServingClient("http://127.0.0.1:9", "toy", retries=2, backoff=0.01, timeout=2) as client:
        with pytest.raises(ServingClientError) as info:
            client.predict([{"x": 1.0}])
    assert info.value.status == "connection"


@pytest.mark.parametrize("argv,fragment", [
    (["--model-base-path", "/definitely/missing"], "not a directory"),
    ([], "--model-base-path"),
    (["--model-base-path", ".", "--request-log-sample-rate", "2"], "within [0, 1]"),
    (["--model-base-path", ".", "--model-name", "bad name!"], "valid model name"),
])
def test_cli_rejects_bad_flags_with_one_line(argv: list[str], fragment: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and err.startswith("error: ")


def test_cli_bad_config_file_exits_non_zero(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text("model_config_list { config { name: 'taxi' } }")
    proc = subprocess.run([sys.executable, "-m", "serving", "--model-config-file", str(config), "--rest-api-port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {config}: model 'taxi' has no base_path"


def test_busy_ports_fail_with_one_line(server: ServingServer, capsys: pytest.CaptureFixture) -> None:
    base = str(Path(server.registry.models["toy"].spec.base_path))
    rest_port = server.rest_port
    assert main(["--model-base-path", base, "--rest-api-port", str(rest_port), "--grpc-port", "0"]) == 2
    assert "cannot bind REST port" in capsys.readouterr().err
    grpc_port = server.grpc_port
    assert main(["--model-base-path", base, "--rest-api-port", "0", "--grpc-port", str(grpc_port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "cannot bind gRPC port" in err[-1] and err[-1].startswith("error: ")


@pytest.mark.parametrize("flags, message", [
    (["--rest-api-port", "99999"], "--rest-api-port 99999 is not a port number"),
    (["--request-timeout-seconds", "nan"], "--request-timeout-seconds must be > 0"),
    (["--file-system-poll-wait-seconds", "-1"], "--file-system-poll-wait-seconds must be a number of seconds >= 0"),
    (["--model-config-file-poll-wait-seconds", "inf"], "--model-config-file-poll-wait-seconds must be a number"),
    (["--request-log-sample-rate", "nan"], "--request-log-sample-rate must be within [0, 1]"),
    (["--model-config-file", "{tmp}/bad.config"], "bad.config"),
])
def test_bad_server_flags_are_one_line_before_tensorflow_loads(tmp_path: Path, flags: list[str], message: str) -> None:
    probe = ("import sys; from serving.__main__ import main; code = main(sys.argv[1:]); "
             "sys.exit(code + 10 * ('tensorflow' in sys.modules))")
    (tmp_path / "bad.config").write_text("model_config_list { config { name: 'x' base_path: 5 } }")
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    done = subprocess.run([sys.executable, "-c", probe, "--model-base-path", str(tmp_path), *flags],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2, done.stderr  # 12: refused, but only after importing TensorFlow
    assert done.stderr.strip().splitlines() == [f"error: {done.stderr.strip()[7:]}"] and message in done.stderr


@pytest.mark.parametrize("text, message", [
    ("fare,company\n12.5,Flash Cab\n", "cannot read 'fare,company' (expected lines like"),  # served with defaults
    ("batch_timeout_micros { value: -5 }", "batch_timeout_micros -5 is negative"),  # ignored before
    ("max_batch_size { value: 1.5 }", "max_batch_size '1.5' is not a whole number"),
    ("max_batch_size: 8", "max_batch_size is written 'max_batch_size { value: N }'"),
    ("max_batch_size { value: 8 }\nmax_batch_sise { value: 8 }", "unknown field 'max_batch_sise'"),
    ("max_batch_size { value: 128 } max_batch_size { value: 4 }", "max_batch_size is set twice"),  # the last won
])
def test_a_batching_parameters_file_that_is_not_one_is_one_line_naming_it(
        tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture) -> None:
    params = tmp_path / "batching.txt"
    params.write_text(text)
    assert main(["--model-base-path", str(tmp_path), "--batching-parameters-file", str(params)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {params}: batching parameters: ") and message in err[0], err


def test_batching_parameters_read_as_tf_serving_writes_them() -> None:
    from serving.server import parse_batching_parameters

    text = ("# tuned for 2 cores\nmax_batch_size { value: 0x20 }\nbatch_timeout_micros { value: 500 }\n"
            "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\npad_variable_length_inputs: true\n"
            "enable_large_batch_splitting { value: true }\nnum_batch_threads { value: 2 }\n")
    params = parse_batching_parameters(text)
    assert (params.max_batch_size, params.batch_timeout_micros, params.num_batch_threads) == (32, 500, 2)
    # the text format's other spellings: `name: { }`, `< >`, separators, lists, quoted strings
    other = ('max_batch_size: { value: 64 }, batch_timeout_micros < value: 10 >; allowed_batch_sizes: [8, 64]\n'
             'thread_pool_name { value: "batch pool" }')
    params = parse_batching_parameters(other)
    assert (params.max_batch_size, params.batch_timeout_micros, params.num_batch_threads) == (64, 10, 1)


def test_model_base_path_takes_a_file_uri_and_refuses_other_schemes_in_words(tmp_path: Path) -> None:
    # README: "A base path is a local folder or a file:// URI; other schemes (gs://) are refused in words".
    from serving.__main__ import build_parser, options_from_args

    args = build_parser().parse_args(["--model-base-path", f"file://{tmp_path}", "--model-name", "taxi"])
    (spec,) = options_from_args(args).models
    assert spec.base_path == str(tmp_path.resolve())
    probe = "import sys; from serving.__main__ import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", probe, "--model-base-path", "gs://bucket/serving_model/taxi"],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --model-base-path gs://bucket/serving_model/taxi: this server reads local folders (paths, file:// "
        "URIs); TF Serving reads other file systems"]


def test_client_retries_503_then_reports_it(tmp_path: Path) -> None:
    push_toy(tmp_path, 1)
    opts = ServerOptions(models=[ModelSpec("toy", str(tmp_path))], rest_port=0, grpc_port=None,
                         file_system_poll_wait_seconds=0, limits=Limits(max_inflight=0))  # every predict: 503
    with ServingServer(opts) as srv, ServingClient(srv.url, "toy", retries=2, backoff=0.1) as client:
        start = time.monotonic()
        with pytest.raises(ServingClientError) as info:
            client.predict([{"x": 1.0, "s": ""}])
        assert info.value.status == 503 and "overloaded" in info.value.message
        assert time.monotonic() - start >= 0.3  # two backoffs: 0.1 + 0.2


class _ToyWithTolls(tf.Module):
    """The toy's next version: one more input, as a retrained model with a new feature has."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="x"),
                                  tf.TensorSpec([None], tf.string, name="s"),
                                  tf.TensorSpec([None], tf.float64, name="tolls")])
    def predict(self, x: tf.Tensor, s: tf.Tensor, tolls: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.cast(x * 10.0, tf.float32), "n": tf.strings.length(s) + tf.zeros_like(tf.cast(x, tf.int32))}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_long_lived_client_follows_a_new_version_with_another_input(tmp_path: Path, protocol: str) -> None:
    """The client read the signature once: after a hot reload to a version with one more input every request
    was refused ("missing input 'tolls'") while a new client, which fills it as missing, succeeded."""
    base = tmp_path / "toy"
    base.mkdir()
    push_toy(base, 1)
    module = _ToyWithTolls()
    tf.saved_model.save(module, str(tmp_path / "next"), signatures={"serving_default": module.predict})
    opts = ServerOptions(models=[ModelSpec("toy", str(base))], rest_port=0, grpc_port=0,
                         file_system_poll_wait_seconds=0.1)
    with ServingServer(opts) as srv, ServingClient(srv.url, "toy", protocol=protocol,
                                                   grpc_target=srv.grpc_target) as client:
        assert client.predict([{"x": 2.0, "s": "ab"}]) == [{"y": 2.0, "n": 2}]
        from serving.testing import push

        push(tmp_path / "next", base, 2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with ServingClient(srv.url, "toy") as fresh:
                if "tolls" in fresh.input_dtypes():
                    break
            time.sleep(0.1)
        assert client.predict([{"x": 2.0, "s": "ab"}]) == [{"y": 20.0, "n": 2}]
        assert client.input_dtypes() == {"x": "DT_DOUBLE", "s": "DT_STRING", "tolls": "DT_DOUBLE"}


def _serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    push_toy(tmp_path / "toy", 1)
    probe = "import sys; from serving.__main__ import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", probe, "--model-name", "toy", "--model-base-path",
                           str(tmp_path / "toy"), "--log-level", "ERROR", *flags],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])


def test_a_busy_grpc_port_is_one_line_without_grpcs_own(tmp_path: Path) -> None:
    """gRPC's C core printed 'E1125 ... add_port.cc:83] Failed to add port' above the error line."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _serve(tmp_path, "--rest-api-port", "0", "--grpc-port", str(port))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: cannot bind gRPC port 127.0.0.1:{port} (in use?); pick another "
                                        "with --grpc-port"], done.stderr


@pytest.mark.parametrize("flags,message", [
    # REST took the port, and gRPC failed on it after the models loaded, saying "in use?"
    (["--rest-api-port", "18871", "--grpc-port", "18871"],
     "error: --rest-api-port and --grpc-port are both 18871: give them different ports"),
    # the host is the problem, not the port: "pick another with --rest-api-port" sent the user the wrong way
    (["--host", "999.1.1.1", "--rest-api-port", "0", "--grpc-port", "0"],
     "error: cannot bind REST port 999.1.1.1:0: Name or service not known ('999.1.1.1'); give an address of this "
     "machine with --host, e.g. 127.0.0.1 or 0.0.0.0"),
])
def test_bad_port_and_host_flags_are_named(tmp_path: Path, flags: list[str], message: str) -> None:
    done = _serve(tmp_path, *flags)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [message], done.stderr
