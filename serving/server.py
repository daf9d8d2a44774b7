"""Wires registry, REST, gRPC, metrics, batching and the request log together.

One object owns the lifecycle so the CLI, the tests and the benchmark start
exactly the same server (tests and benchmark in a thread, the CLI in the
foreground with signal handling).
"""
from __future__ import annotations

import logging
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import uvicorn

from serving.batching import Batcher, BatchingParameters
from serving.config import ConfigError, ModelSpec, load_model_config
from serving.core import Limits, ServingCore
from serving.errors import ServingError
from serving.grpc_server import create_grpc_server
from serving.http_protocol import with_head_deadline
from serving.metrics import Metrics
from serving.registry import Registry
from serving.request_log import RequestLogger
from serving.rest import create_app

log = logging.getLogger("serving")


@dataclass
class ServerOptions:
    """Everything the server is configured with; the CLI only fills this in."""

    models: list[ModelSpec]
    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int | None = 8500  # None: no gRPC
    file_system_poll_wait_seconds: float = 1.0
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    # TF Serving's --allow_version_labels_for_unavailable_models: a new label may name a version still loading
    allow_version_labels_for_unavailable_models: bool = False
    base_path_override: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    batching: BatchingParameters | None = None
    request_log_dir: Path | None = None
    request_log_sample_rate: float = 0.0
    model_threads: int = 1
    tf_intra_op_threads: int = 0  # 0: TensorFlow's default (all cores)
    tf_inter_op_threads: int = 0
    shutdown_grace_seconds: float = 10.0  # requests still running then are answered 503

    def __post_init__(self) -> None:
        # One port for both: REST binds it, and gRPC fails after the models loaded, saying "in use?".
        if self.grpc_port is not None and self.grpc_port == self.rest_port != 0:
            raise ValueError(f"--rest-api-port and --grpc-port are both {self.rest_port}: give them different ports")


# TF Serving's BatchingParameters fields this server reads no value from (it batches, pads and splits its own way).
IGNORED_BATCHING_FIELDS = ("pad_variable_length_inputs", "allowed_batch_sizes", "enable_large_batch_splitting",
                           "max_execution_batch_size", "thread_pool_name", "batch_padding_policy")
_TEXT_VALUE = r'(?:"[^"]*"|\'[^\']*\'|[^\s{}<>,;\[\]"\']+)'
_BATCHING_ENTRY = re.compile(
    rf"\s*(?:(\w+)\s*:?\s*(?:\{{\s*value\s*:\s*({_TEXT_VALUE})\s*\}}|<\s*value\s*:\s*({_TEXT_VALUE})\s*>)"
    rf"|(\w+)\s*:\s*({_TEXT_VALUE}|\[[^\]]*\]))\s*[,;]?\s*")


def parse_batching_parameters(text: str) -> BatchingParameters:
    """TF Serving's batching_parameters.txt: the text format of its BatchingParameters proto (`name { value: N }`
    for the wrapped fields, `name: v` for the plain ones, `#` comments). Anything else is refused, naming it: a
    file that is not this format (a CSV passed by mistake) was read as "no settings" and served with defaults."""
    known = set(BatchingParameters.__dataclass_fields__)
    values: dict[str, int] = {}
    body = re.sub(r"#[^\n]*", "", text)
    position = 0
    while position < len(body):
        entry = _BATCHING_ENTRY.match(body, position)
        if entry is None or entry.end() == position:
            if not body[position:].strip():
                break
            near = body[position:].strip().splitlines()[0][:40]
            raise ConfigError(f"batching parameters: cannot read {near!r} (expected lines like "
                              "'max_batch_size { value: 128 }')")
        position = entry.end()
        wrapped = entry.group(1) is not None  # `name { value: v }` (or `name: <value: v>`): TF Serving's wrappers
        name = entry.group(1) if wrapped else entry.group(4)
        value = (entry.group(2) or entry.group(3)) if wrapped else entry.group(5)
        if name in known:
            if not wrapped:
                raise ConfigError(f"batching parameters: {name} is written '{name} {{ value: N }}'")
            if name in values:
                raise ConfigError(f"batching parameters: {name} is set twice")
            try:
                if "_" in value:
                    raise ValueError(value)
                values[name] = int(value, 0)  # decimal or 0x hex, as the text format allows
            except ValueError:
                raise ConfigError(f"batching parameters: {name} {value!r} is not a whole number") from None
        elif name not in IGNORED_BATCHING_FIELDS:
            raise ConfigError(f"batching parameters: unknown field '{name}'")
    params = BatchingParameters(**values)
    if params.max_batch_size < 1 or params.num_batch_threads < 1 or params.max_enqueued_batches < 1:
        raise ConfigError("batching parameters: max_batch_size, num_batch_threads and max_enqueued_batches "
                          "must be >= 1")
    if params.batch_timeout_micros < 0:
        raise ConfigError(f"batching parameters: batch_timeout_micros {params.batch_timeout_micros} is negative")
    return params


def model_specs_from_config(options: ServerOptions) -> list[ModelSpec]:
    """Reads the config file (if any), applying --model-base-path overrides."""
    if options.model_config_file is None:
        return options.models
    specs = load_model_config(options.model_config_file)
    names = {s.name for s in specs}
    for name in options.base_path_override:
        if name not in names:
            raise ConfigError(f"model '{name}' is not in {options.model_config_file}; names there: {sorted(names)}")
    return [replace(s, base_path=options.base_path_override.get(s.name, s.base_path)) for s in specs]


def configure_tensorflow(intra_op: int, inter_op: int) -> None:
    """TF's thread pools, like tensorflow_model_server's parallelism flags.
    Only possible before the first op runs; later calls keep what is set."""
    import tensorflow as tf

    try:
        if intra_op > 0:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op > 0:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as exc:
        log.warning("TensorFlow thread pools already initialised, flags ignored: %s", exc)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so port 0 works and a busy port fails fast."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, socket.gaierror):  # not the port's doing: the host is no address or known name
            raise OSError(f"cannot bind REST port {host}:{port}: {exc.strerror} ({host!r}); give an address of "
                          "this machine with --host, e.g. 127.0.0.1 or 0.0.0.0") from None
        raise OSError(f"cannot bind REST port {host}:{port}: {exc.strerror}; pick another with --rest-api-port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _StopServing(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM, raised again by uvicorn once it has drained REST."""


def _stop_serving(signum: int, frame: object) -> None:
    raise _StopServing


class ServingServer:
    """The local TF-Serving-compatible model server."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        configure_tensorflow(options.tf_intra_op_threads, options.tf_inter_op_threads)
        self.metrics = Metrics()
        specs = model_specs_from_config(options)
        reload = (lambda: model_specs_from_config(options)) if options.model_config_file else None
        try:
            self.registry = Registry(
                specs, options.file_system_poll_wait_seconds, self._on_event,
                reload_config=reload, config_poll_seconds=options.model_config_file_poll_wait_seconds,
                allow_labels_for_unavailable=options.allow_version_labels_for_unavailable_models,
            )
        except ServingError as exc:  # nothing is loaded before the first config: TF Serving fails to start alike
            hint = (" (at start no version is loaded yet: labels need --allow-version-labels-for-unavailable-models,"
                    " as in TF Serving)") if exc.code == "FAILED_PRECONDITION" else ""
            raise ConfigError(exc.message + hint) from None
        self.request_log = None
        if options.request_log_dir is not None and options.request_log_sample_rate > 0:
            self.request_log = RequestLogger(options.request_log_dir, options.request_log_sample_rate,
                                             on_drop=self.metrics.request_log_dropped.inc)
        self.batcher = Batcher(options.batching) if options.batching is not None else None
        self.core = ServingCore(self.registry, self.metrics, options.limits, self.request_log, self.batcher,
                                options.model_threads)
        self.app = create_app(self.core, requests_open=self._requests_open)
        self._sock = bind_socket(options.host, options.rest_port)
        self.rest_port = self._sock.getsockname()[1]
        self.grpc_server = None
        self.grpc_port: int | None = None
        if options.grpc_port is not None:
            try:
                self.grpc_server, self.grpc_port = create_grpc_server(self.core, options.host, options.grpc_port)
            except OSError:
                self._sock.close()
                raise
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _on_event(self, model: str, event: str, version: int, message: str) -> None:
        self.metrics.model_events.labels(model, event).inc()
        if hasattr(self, "registry"):
            self.metrics.available.labels(model).set(len(self.registry.models[model].available_versions()))

    def _requests_open(self) -> int:
        """Requests uvicorn has parsed and not yet answered, queued ones included."""
        server = self._uvicorn
        return len(server.server_state.tasks) if server is not None else 1

    @property
    def url(self) -> str:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return f"http://{host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str | None:
        return f"{self.options.host}:{self.grpc_port}" if self.grpc_port else None

    def _make_uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_keep_alive=30,
            timeout_graceful_shutdown=self.options.shutdown_grace_seconds, lifespan="on", h11_max_incomplete_event_size=64 * 1024,
            http=with_head_deadline(self.options.limits.head_timeout_s),
        )
        self._uvicorn = uvicorn.Server(config)
        return self._uvicorn

    def _start_backends(self) -> None:
        self.registry.start()
        for name, manager in self.registry.models.items():
            versions = manager.available_versions()
            if not versions:
                log.warning("model %s: no loadable version under %s yet; polling", name, manager.spec.base_path)
        if self.grpc_server is not None:
            self.grpc_server.start()

    def start(self, timeout: float = 60.0) -> ServingServer:
        """Load models and serve in a background thread (tests, benchmark)."""
        self._start_backends()
        server = self._make_uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self._sock]},
                                        name="rest-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("REST server did not start")
            time.sleep(0.02)
        return self

    def serve_forever(self) -> None:
        """Foreground serving for the CLI; returns after SIGINT/SIGTERM, once stop() has drained and flushed.

        uvicorn drains REST on the signal, then raises it again: SIGTERM's default action killed the process
        there, before stop(), so gRPC requests under way were cut and the request log's queue was lost.
        """
        self._start_backends()
        log.warning("serving REST on %s%s", self.url,
                    f", gRPC on {self.grpc_target}" if self.grpc_target else "")
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _stop_serving) if main_thread else None
        try:
            self._make_uvicorn().run(sockets=[self._sock])
        except (KeyboardInterrupt, _StopServing):
            pass
        finally:
            self.stop()
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    def stop(self) -> None:
        """Stop accepting, finish in-flight requests, flush the request log."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.options.shutdown_grace_seconds + 5)
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=5).wait(10)
        self.registry.stop()
        if self.batcher is not None:
            self.batcher.stop()
        if self.core.executor is not None:
            self.core.executor.shutdown(wait=False, cancel_futures=True)
        if self.request_log is not None:
            self.request_log.close()
        self._sock.close()

    def __enter__(self) -> ServingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
