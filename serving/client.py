"""Client for the taxi model behind TF Serving (container or local server).

Apps send plain dicts; missing values may be None (sent as NaN or "" per the
signature's dtype, the model's own missing-value convention). Retries cover
only what a retry can fix: 503 / UNAVAILABLE (a version switching, overload)
and connection failures. Errors keep the server's message.

    with ServingClient("http://127.0.0.1:8501", "taxi") as c:
        c.predict([{"fare": 12.5, "payment_type": "Cash", ...}])
"""
from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

# 503: a version switching, overload; 502/504: a proxy in front (nginx) whose server restarts or is slow.
RETRY_HTTP = {502, 503, 504}
NOT_SERVING = "not_serving"  # status of an answer that is not TF Serving's (another server at the URL)
# gRPC's UNAVAILABLE when there was no answer at all (nothing listening, the server killed), not a server's word
GRPC_UNREACHED = re.compile(r"failed to connect|connection refused|socket closed|connection reset|end of tcp stream|"
                            r"broken pipe|dns resolution failed", re.IGNORECASE)


class ServingClientError(Exception):
    """The server refused or failed a request; `message` is the server's own.
    `sent` is False when the client refused it first, with the server's rules (gRPC)."""

    def __init__(self, status: int | str, message: str, sent: bool = True) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.sent = status, message, sent


def _shape(tensor_shape: dict[str, Any]) -> tuple[int, ...] | None:
    """A TensorShapeProto as metadata JSON writes it -> (-1 = any size), None: unknown rank."""
    if tensor_shape.get("unknown_rank"):
        return None
    return tuple(int(d.get("size", 0)) for d in tensor_shape.get("dim", []))


def one_line(text: str, limit: int = 300) -> str:
    """A server's text (an HTML error page, a multi-line message) as one line: tags dropped, whitespace joined."""
    text = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_json(value: Any) -> bool:
    """A value both protocols can send as it is (bytes, numpy scalars: not over JSON)."""
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return value is None or isinstance(value, (str, int, float))  # bool is an int


class ServingClient:
    """predict() over REST or gRPC with timeouts and bounded retries."""

    def __init__(self, url: str, model: str = "taxi", protocol: str = "rest", grpc_target: str | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff: float = 0.2, version: int | None = None,
                 label: str | None = None, signature: str = "serving_default") -> None:
        if protocol not in ("rest", "grpc"):
            raise ValueError(f"protocol must be 'rest' or 'grpc', not {protocol!r}")
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        self.url, self.model, self.protocol, self.grpc_target = url.rstrip("/"), model, protocol, grpc_target
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.version, self.label, self.signature = version, label, signature
        self._http = httpx.Client(timeout=timeout)
        self._dtypes: dict[str, str] | None = None
        self._shapes: dict[str, tuple[int, ...] | None] = {}  # for gRPC requests, read with the dtypes
        self._stub = None
        if protocol == "grpc":
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            if not grpc_target:
                raise ValueError("protocol 'grpc' needs grpc_target, e.g. '127.0.0.1:8500'")
            self._channel = grpc.insecure_channel(grpc_target)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def _model_path(self) -> str:
        # quoted: a name with '?', '#' or '/' (`taxi?x=1`) would be read as the URL's query or another path
        path = f"{self.url}/v1/models/{quote(self.model, safe='')}"
        if self.version is not None:
            return f"{path}/versions/{self.version}"
        if self.label is not None:
            return f"{path}/labels/{quote(self.label, safe='')}"
        return path

    def _not_serving(self, url: str, what: str) -> ServingClientError:
        return ServingClientError(NOT_SERVING, f"{url} did not answer as TF Serving ({what}); is --url the "
                                  "model server's REST address?")

    def _with_retries(self, call: Any) -> Any:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return call()
            except ServingClientError as exc:
                retryable = exc.status in RETRY_HTTP or exc.status in ("UNAVAILABLE", "connection")
                if not retryable or attempt == self.retries:
                    raise
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _rest(self, method: str, url: str, body: Any = None) -> Any:
        def call() -> Any:
            try:
                if method == "GET":
                    resp = self._http.get(url)
                else:
                    resp = self._http.post(url, content=json.dumps(body), headers={"content-type": "application/json"})
            except httpx.TimeoutException:
                raise ServingClientError("timeout", f"no answer from {url} within {self.timeout:g}s") from None
            except httpx.TransportError as exc:
                raise ServingClientError("connection", f"cannot reach {url}: {exc}") from None
            try:
                data = json.loads(resp.content)
            except ValueError:  # an HTML page: a proxy's 502, another web server
                if resp.status_code == 200:
                    raise self._not_serving(url, "its answer is not JSON") from None
                raise ServingClientError(resp.status_code, one_line(resp.text)) from None
            if resp.status_code != 200:
                error = data.get("error") if isinstance(data, dict) else None
                raise ServingClientError(resp.status_code, error if isinstance(error, str) else one_line(resp.text))
            if not isinstance(data, dict):
                raise self._not_serving(url, f"its answer is a JSON {type(data).__name__}, not an object")
            return data

        return self._with_retries(call)

    def input_dtypes(self) -> dict[str, str]:
        """Input name -> DT_* of the signature, read once from the metadata."""
        if self._dtypes is None:
            url = f"{self._model_path()}/metadata"
            meta = self._rest("GET", url)
            try:
                signatures = meta["metadata"]["signature_def"]["signature_def"]
                if not isinstance(signatures, dict):
                    raise TypeError
            except (KeyError, TypeError):
                raise self._not_serving(url, "no metadata.signature_def.signature_def in its answer") from None
            if self.signature not in signatures:
                raise ValueError(f"the model has no signature {self.signature!r}; "
                                 f"it has: {', '.join(sorted(signatures))}")
            inputs = signatures[self.signature].get("inputs") if isinstance(signatures[self.signature], dict) else None
            if not isinstance(inputs, dict) or not all(
                    isinstance(v, dict) and isinstance(v.get("dtype"), str) for v in inputs.values()):
                raise self._not_serving(url, f"signature {self.signature!r} has no inputs with dtypes")
            self._dtypes = {k: v["dtype"] for k, v in inputs.items()}
            self._shapes = {k: _shape(v.get("tensor_shape") or {}) for k, v in inputs.items()}
        return self._dtypes

    def _fill(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        dtypes = self.input_dtypes()
        out = []
        for i, row in enumerate(rows):
            unknown = set(row) - set(dtypes)
            if unknown:
                raise ValueError(f"row {i}: unknown feature {sorted(unknown)[0]!r}; expected {sorted(dtypes)}")
            for name, value in row.items():
                if not _is_json(value):
                    raise ValueError(f"row {i}: feature {name!r} is {type(value).__name__}; send str, int, float, bool, "
                                     "None or a list of them ({'b64': <base64 text>} for binary strings)")
            out.append({k: (row.get(k) if row.get(k) is not None else ("" if t == "DT_STRING" else math.nan))
                        for k, t in dtypes.items()})
        return out

    def predict(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One prediction dict per row, in order.

        The signature's inputs are read once; a request refused as invalid reads them again, and when the
        served version's signature changed (a new version with another input), the rows are sent once more
        to the new one, so a long-lived client follows a hot reload as a new client would."""
        if not rows:
            return []
        try:
            return self._predict(rows)
        except ServingClientError as exc:
            if exc.status not in (400, "INVALID_ARGUMENT") or self._dtypes is None:
                raise
            known, self._dtypes = self._dtypes, None
            if self.input_dtypes() == known:
                raise
        return self._predict(rows)

    def _predict(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        filled = self._fill(rows)
        if self.protocol == "grpc":
            return self._predict_grpc(filled)
        body = {"signature_name": self.signature, "instances": filled}
        url = f"{self._model_path()}:predict"
        preds = self._rest("POST", url, body).get("predictions")
        if not isinstance(preds, list) or len(preds) != len(rows):
            raise self._not_serving(url, f"no list of {len(rows)} predictions in its answer")
        return [p if isinstance(p, dict) else {"output": p} for p in preds]

    def _predict_grpc(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import grpc
        import tensorflow as tf
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import predict_pb2

        from serving.codec import TensorSpec, loads, to_array, to_json
        from serving.errors import ServingError

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = self.signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        elif self.label is not None:
            request.model_spec.version_label = self.label
        dtypes = self.input_dtypes()
        for name in sorted(dtypes):  # the server's order, so the same value is named first
            # The server's own JSON rules, so a row REST refuses is refused here with the same message.
            spec = TensorSpec(name, tf.as_dtype(types_pb2.DataType.Value(dtypes[name])), self._shapes[name])
            try:
                # Through JSON and back, as the REST path sends them: inf is the Infinity literal there, not an
                # overflowed number, and 9007199254740993 reaches a double input as the same int.
                values = loads(json.dumps([r[name] for r in rows]).encode())
                array = to_array(values, spec, batched_rows=True)
            except ServingError as exc:
                raise ServingClientError(exc.code, exc.message, sent=False) from None
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))

        def call() -> Any:
            try:
                return self._stub.Predict(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                details = exc.details() or ""
                if exc.code() == grpc.StatusCode.UNAVAILABLE and GRPC_UNREACHED.search(details):
                    raise ServingClientError("connection", f"cannot reach {self.grpc_target} over gRPC "
                                             f"(UNAVAILABLE): {one_line(details)}") from None
                raise ServingClientError(exc.code().name, details) from None

        response = self._with_retries(call)
        # as REST writes them (float32 shortest, strings as text or b64), so both protocols print alike
        cols = {k: to_json(k, tf.make_ndarray(v)) for k, v in response.outputs.items()}
        return [dict(zip(cols, vals, strict=False)) for vals in zip(*cols.values(), strict=False)]

    def close(self) -> None:
        self._http.close()
        if self._stub is not None:
            self._channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
