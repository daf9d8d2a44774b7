"""The protocol-independent request path shared by REST and gRPC.

Both front ends resolve the servable, check limits, run the signature, record
metrics and sample the request log here, so they cannot drift apart.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving import codec
from serving.batching import Batcher
from serving.codec import SignatureInfo
from serving.errors import ServingError, invalid
from serving.metrics import Metrics
from serving.registry import Registry
from serving.request_log import RequestLogger
from serving.servable import Servable


async def within(awaitable: Any, seconds: float, on_timeout: Callable[[], ServingError]) -> Any:
    """Await with a deadline. A timer cancels the awaited future (or, for a
    coroutine, the current task): unlike asyncio.wait_for, no extra Task is
    created per request on the hot path."""
    target = awaitable if asyncio.isfuture(awaitable) else asyncio.current_task()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        target.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if expired:
            raise on_timeout() from None
        raise
    finally:
        timer.cancel()


# Largest call that runs in the caller's thread when the server is otherwise idle.
INLINE_MAX_ROWS = 16
UNKNOWN_LABEL = "<unknown>"  # the metrics' model label for a model name the server does not serve


@dataclass(frozen=True)
class Limits:
    """Guards that keep one bad client from taking the server down."""

    max_body_bytes: int = 10 * 1024 * 1024
    max_batch_rows: int = 1024
    request_timeout_s: float = 30.0
    body_timeout_s: float = 30.0
    head_timeout_s: float = 30.0  # request line and headers; see serving/http_protocol.py
    max_inflight: int = 256


@dataclass
class Tracked:
    """Labels of a request, filled in as they become known."""

    model: str
    version: str = ""
    signature: str = ""


class ServingCore:
    """Resolve -> validate -> run -> observe, for every protocol."""

    def __init__(self, registry: Registry, metrics: Metrics, limits: Limits,
                 request_log: RequestLogger | None = None, batcher: Batcher | None = None,
                 model_threads: int = 1) -> None:
        self.registry, self.metrics, self.limits = registry, metrics, limits
        self.request_log, self.batcher = request_log, batcher
        # 0 threads: always run in the caller's thread
        self.executor = ThreadPoolExecutor(max_workers=model_threads, thread_name_prefix="model") if model_threads else None
        self._running, self._running_lock = 0, threading.Lock()  # model calls under way

    def resolve(self, model: str, version: int | None, label: str | None) -> Servable:
        if label is not None and not self.registry.serves(model):  # TF Serving looks the label up first
            raise invalid(f"Unrecognized servable version label: {label}")
        return self.registry.model(model).resolve(version, label)

    def check_rows(self, feeds: dict[str, np.ndarray]) -> int:
        rows = codec.batch_size(feeds)
        if rows > self.limits.max_batch_rows:
            raise invalid(
                f"batch of {rows} rows is larger than the maximum of {self.limits.max_batch_rows}; split the request"
            )
        return rows

    def submit(self, servable: Servable, signature: str, feeds: dict[str, np.ndarray],
               others_waiting: bool = False) -> Future:
        """Start a model call.

        When no other call is running or waiting, a small one runs right here
        in the caller's thread: handing it to another thread and waking the
        caller again only adds latency (about 0.4 ms of a 4 ms REST round trip
        here). Under concurrent load calls go to the batcher, which can merge
        them, or to the model thread(s): one long-lived thread is markedly
        faster than a pool (TF's per-thread eager state stays warm).
        `others_waiting`: the caller knows of requests not yet submitted (the
        REST event loop serves one request at a time, so it must say so).
        """
        rows = self.check_rows(feeds)
        self.metrics.batch_rows.labels(servable.name).observe(rows)
        with self._running_lock:
            alone = self._running == 0 and rows <= INLINE_MAX_ROWS and not others_waiting
            self._running += 1
        try:
            offloaded = None if alone else self._offload(servable, signature, feeds)
        except BaseException:
            self._call_ended()
            raise
        if offloaded is not None:
            offloaded.add_done_callback(self._call_ended)
            return offloaded
        done: Future = Future()
        try:
            done.set_result(servable.run(signature, feeds))
        except Exception as exc:
            done.set_exception(exc)
        finally:
            self._call_ended()
        return done

    def _offload(self, servable: Servable, signature: str, feeds: dict[str, np.ndarray]) -> Future | None:
        if self.batcher is not None and self.batcher.accepts(servable, signature, feeds):
            return self.batcher.submit(servable, signature, feeds)
        if self.executor is not None:
            return self.executor.submit(servable.run, signature, feeds)
        return None

    def _call_ended(self, _done: Future | None = None) -> None:
        with self._running_lock:
            self._running -= 1

    def _finish(self, servable: Servable, signature: str, feeds: dict[str, np.ndarray],
                outputs: dict[str, np.ndarray], protocol: str) -> dict[str, np.ndarray]:
        if self.request_log is not None and self.request_log.sampled():
            self.request_log.log(servable.name, servable.version, signature, protocol, feeds, outputs)
        return outputs

    def _deadline(self) -> ServingError:
        return ServingError("DEADLINE_EXCEEDED", f"prediction did not finish within {self.limits.request_timeout_s:g}s")

    def predict(self, servable: Servable, signature: str, feeds: dict[str, np.ndarray],
                protocol: str) -> dict[str, np.ndarray]:
        """Blocking predict (gRPC threads), sampling the request log on success."""
        outputs = self._result(self.submit(servable, signature, feeds))
        return self._finish(servable, signature, feeds, outputs, protocol)

    def _result(self, future: Future) -> dict[str, np.ndarray]:
        """A model call's outputs, waited for in this thread up to the request timeout."""
        try:
            return future.result(timeout=self.limits.request_timeout_s)
        except FutureTimeout:
            raise self._deadline() from None

    async def predict_async(self, servable: Servable, signature: str, feeds: dict[str, np.ndarray],
                            protocol: str, others_waiting: bool) -> dict[str, np.ndarray]:
        """Predict without holding the event loop while the model runs, unless
        this is the only request (see submit)."""
        future = asyncio.wrap_future(self.submit(servable, signature, feeds, others_waiting))
        outputs = await within(future, self.limits.request_timeout_s, self._deadline)
        return self._finish(servable, signature, feeds, outputs, protocol)

    @contextlib.contextmanager
    def track(self, model: str, method: str, protocol: str) -> Iterator[Tracked]:
        """Count and time one request, whatever way it ends."""
        tracked = Tracked(model)
        start = time.perf_counter()
        status = "OK"
        try:
            yield tracked
        except ServingError as exc:
            status = exc.code
            raise
        except asyncio.CancelledError:  # the server shutting down under a request
            status = "UNAVAILABLE"
            raise
        except BaseException:
            status = "INTERNAL"
            raise
        finally:
            # Label values come from the client's URL and body: only names the server knows become series,
            # or a client looping over made-up model names would grow /metrics without bound.
            known = tracked.model in self.registry.models
            self.metrics.observe(tracked.model if known else UNKNOWN_LABEL, tracked.version,
                                 tracked.signature if known and tracked.version else "", method, protocol, status,
                                 time.perf_counter() - start)

    def examples_call(self, servable: Servable, signature_name: str | None, method: str,
                      examples: Sequence[bytes], tracked: Tracked) -> tuple[SignatureInfo, dict[str, np.ndarray]]:
        """Serialized tf.Examples -> classify/regress signature -> checked outputs.

        The one path of REST :classify/:regress and gRPC Classify/Regress, so
        both refuse and answer alike; the front ends only format the outputs.
        Checks run in TF Serving's order (signature, then "Input is empty.").
        Not sampled into the request log, on either protocol: its reader
        (monitoring) compares named feature columns, not serialized examples.
        """
        sig = servable.signature(signature_name)
        tracked.signature = sig.name
        check_examples_signature(sig, method)
        (outputs,) = self.run_examples(servable, [(sig, method)], examples)
        return sig, outputs

    def run_examples(self, servable: Servable, tasks: Sequence[tuple[SignatureInfo, str]],
                     examples: Sequence[bytes]) -> list[dict[str, np.ndarray]]:
        """The checked outputs of each (signature, method) task on the same
        examples: examples_call's one task, or gRPC MultiInference's several.
        Every signature must have passed check_examples_signature, as TF
        Serving checks all tasks before it looks at the input."""
        if not examples:
            raise invalid("Input is empty.")
        batch = np.array(examples, dtype=object)
        futures = [self.submit(servable, sig.name, {next(iter(sig.inputs)): batch}) for sig, _method in tasks]
        return [_checked_outputs(method, self._result(future), len(examples))
                for future, (_sig, method) in zip(futures, tasks, strict=True)]


def check_examples_signature(sig: SignatureInfo, method: str) -> None:
    """What TF Serving's PreProcessClassification/-Regression require of a signature."""
    want = codec.CLASSIFY_METHOD if method == "classify" else codec.REGRESS_METHOD
    kind = "classification" if method == "classify" else "regression"
    if sig.method_name != want:
        raise invalid(
            f"Expected {kind} signature method_name to be {want}. Was: {sig.method_name} (signature '{sig.name}')"
        )
    if len(sig.inputs) != 1:
        raise invalid(f"Expected one input Tensor. (signature '{sig.name}' has {len(sig.inputs)})")
    (name, spec), = sig.inputs.items()
    if name != "inputs":  # TF Serving looks the input up by this key (kClassifyInputs / kRegressInputs)
        raise invalid(f"No {kind} inputs found in SignatureDef '{sig.name}': its one input is '{name}', not 'inputs'")
    if spec.kind != "string":
        raise invalid(f"signature '{sig.name}' must take one string input of serialized tf.Examples")
    names = ("classes", "scores") if method == "classify" else ("outputs",)
    if not set(names) & set(sig.outputs):
        raise invalid(f"signature '{sig.name}' has no output {' or '.join(repr(n) for n in names)}")
    for name in (n for n in names if n in sig.outputs):
        want, got = "DT_STRING" if name == "classes" else "DT_FLOAT", codec.dtype_label(sig.outputs[name].dtype)
        if got != want:
            raise invalid(f"Expected {name} Tensor of {want}. Got: {got} (signature '{sig.name}')")


def _checked_outputs(method: str, outputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """classes/scores as [rows, classes], regression outputs as [rows], as
    TF Serving's PostProcess*Result demand, so no formatter has to guess."""
    if method == "regress":
        values = outputs["outputs"]
        if values.ndim not in (1, 2) or values.size != rows or values.shape[0] != rows:
            raise invalid(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                          f"with batch_size {rows} but got {list(values.shape)}")
        return {"outputs": values.reshape(rows)}
    checked = {name: outputs[name] for name in ("classes", "scores") if name in outputs}
    for name, array in checked.items():
        if array.ndim != 2 or array.shape[0] != rows:
            raise invalid(f"Expected {name} Tensor shape: [batch_size {rows}, num_classes] but got {list(array.shape)}")
    if len({array.shape[1] for array in checked.values()}) > 1:
        raise invalid("Tensors class and score should match in dim_size(1). Got "
                      + " vs. ".join(str(a.shape[1]) for a in checked.values()))
    return checked
