"""TF Serving's REST API (api_rest.md) on FastAPI.

URL forms and error bodies follow http_rest_api_handler.cc so that client apps
and the contract suite cannot tell this server from the TF Serving container.
A request that is alone on the server runs its model call on the event loop
(no thread hop); under concurrent load calls go to the model thread or the
batcher, and the event loop stays free to read the next request.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from serving import codec, example_codec
from serving.core import ServingCore, within
from serving.errors import ServingError, invalid

log = logging.getLogger("serving")

# Case-insensitive like TF Serving's RE2 patterns ("(?i)/v1/models/..."): /V1/Models/taxi:PREDICT is a predict.
# Model names and labels keep their case.
PATH_RE = re.compile(
    r"^(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:[A-Za-z]+)?$", re.IGNORECASE
)
VERBS = ("predict", "classify", "regress")
MODELS_ROOT = "/v1/models"
MODELS_PREFIX = MODELS_ROOT + "/"
BIG_BODY_BYTES = 64 * 1024


def json_response(content: Any, status: int = 200) -> Response:
    """JSON with NaN/Infinity literals allowed, as TF Serving writes them."""
    return Response(json.dumps(content, separators=(",", ":")), status_code=status, media_type="application/json")


def error_response(exc: ServingError) -> Response:
    return json_response({"error": exc.message}, exc.http_status)


def is_gzipped(content_encoding: str | None) -> bool:
    """TF Serving uncompresses a request body whose Content-Encoding names gzip
    (net_http's auto_uncompress_input); other codings it cannot read."""
    codings = {c.strip().lower() for c in (content_encoding or "").split(",")} - {"", "identity"}
    unknown = codings - {"gzip", "x-gzip"}
    if unknown:
        raise invalid(f"Content-Encoding '{sorted(unknown)[0]}' is not supported; send the body as is or gzip it")
    return bool(codings)


def gunzip(data: bytes, limit: int) -> bytes:
    """A gzip body (one or more members), refused once it would exceed `limit`
    bytes: the body limit holds for what the server parses, not what it reads."""
    out, size = [], 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            chunk = inflater.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise invalid(f"request body is not valid gzip ({exc}); send it as is or gzip it whole") from None
        size += len(chunk)
        if size > limit:
            raise ServingError("RESOURCE_EXHAUSTED", f"uncompressed request body exceeds the limit of {limit} "
                               "bytes; split the request", 413)
        if not inflater.eof:
            raise invalid("request body is a truncated gzip stream")
        out.append(chunk)
        data = inflater.unused_data
    return b"".join(out)


def _parse_path(method: str, path: str) -> tuple[str, int | None, str | None, str | None]:
    m = PATH_RE.match(path)
    if not m:
        raise invalid(f"Malformed request: {method} /v1/models/{path}")
    version = m["version"]
    if version is not None and not (version.isdigit() and int(version) < 2**63):
        raise invalid(f"Malformed request: {method} /v1/models/{path} (version must be a non-negative integer)")
    return m["model"], int(version) if version else None, m["label"], m["suffix"] and m["suffix"].lower()


def create_app(core: ServingCore, parse_threads: int = 2,
               requests_open: Callable[[], int] | None = None) -> Callable[..., Any]:
    """The REST app (ASGI); `core` owns models, limits, metrics and the request log.
    `requests_open`: how many requests the HTTP server has read and not yet
    answered; with only one, its model call runs on the event loop (no thread
    hop). Without it, every call goes to the model thread or batcher."""
    app = FastAPI(title="TF-Serving-compatible REST API", docs_url=None, redoc_url=None, openapi_url=None)
    # Large bodies are decoded off the event loop so they do not stall small requests.
    executor = ThreadPoolExecutor(max_workers=parse_threads, thread_name_prefix="rest-parse")
    inflight = 0
    limits = core.limits

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # TF Serving's REST handler takes every path matching (?i)/v1/.* and answers any it cannot route, or a
        # method it does not take there (POST /v1/models), as a malformed request: 400, not 404 or 405.
        if exc.status_code in (404, 405) and request.url.path[:4].lower() == "/v1/":
            return json_response({"error": f"Malformed request: {request.method} {request.url.path}"}, 400)
        return json_response({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_response({"error": f"internal error: {type(exc).__name__}"}, 500)

    @app.on_event("shutdown")
    def _shutdown() -> None:
        executor.shutdown(wait=False, cancel_futures=True)

    @app.get("/monitoring/prometheus/metrics")
    def metrics() -> Response:
        return Response(core.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    def no_model_named() -> Response:
        return json_response({"error": "Missing model name in request."}, 400)

    @app.api_route("/v1/models/{path:path}", methods=["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
    def other_method(request: Request, path: str) -> Response:
        # TF Serving answers any method but GET and POST as a malformed request (400), not 405.
        return json_response({"error": f"Malformed request: {request.method} /v1/models/{path}"}, 400)

    @app.get("/v1/models/{path:path}")
    def get_model(path: str) -> Response:
        try:
            model, version, label, suffix = _parse_path("GET", path)
            if suffix == "/metadata":
                return json_response(core.registry.metadata(core.resolve(model, version, label)))
            if suffix:
                raise invalid(f"Malformed request: GET /v1/models/{path}")
            # A label is not read here, as in TF Serving: every version is listed.
            states = core.registry.model_states(model, version)
            return json_response({"model_version_status": [
                {"version": str(s.version), "state": s.state,
                 "status": {"error_code": s.error_code, "error_message": s.error_message}}
                for s in states
            ]})
        except ServingError as exc:
            return error_response(exc)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise ServingError("RESOURCE_EXHAUSTED", f"request body of {declared} bytes exceeds the limit of "
                               f"{limits.max_body_bytes}; split the request", 413)

        async def read_all() -> bytes:
            chunks, size = [], 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_body_bytes:  # chunked uploads have no content-length
                        raise ServingError("RESOURCE_EXHAUSTED", f"request body exceeds the limit of "
                                           f"{limits.max_body_bytes} bytes; split the request", 413)
                    chunks.append(chunk)
            except ClientDisconnect:  # the client's own doing, not a server error: counted as CANCELLED
                raise ServingError("CANCELLED", "the client closed the connection before sending the whole body") from None
            return b"".join(chunks)

        return await within(read_all(), limits.body_timeout_s,
                            lambda: ServingError("DEADLINE_EXCEEDED", "timed out reading the request body", 408))

    async def offload(fn: Any, *args: Any, big: bool) -> Any:
        """Run CPU-heavy JSON work inline when small, on a thread when large."""
        if not big:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    def decode(body_bytes: bytes, gzipped: bool) -> Any:
        if gzipped:
            body_bytes = gunzip(body_bytes, limits.max_body_bytes)
        try:
            return codec.loads(body_bytes)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise invalid(f"JSON Parse error: {str(exc)[:200]}") from None

    def examples_call(servable: Any, signature_name: str | None, verb: str, body: Any, tracked: Any) -> dict[str, Any]:
        """:classify / :regress; the body is read first, as TF Serving's FillClassifyRegressRequestFromJson."""
        examples = example_codec.parse_examples(body)
        _sig, outputs = core.examples_call(servable, signature_name, verb, examples, tracked)
        return example_codec.format_classify(outputs) if verb == "classify" else example_codec.format_regress(outputs)

    async def serve(servable: Any, verb: str, body: Any, tracked: Any, big: bool) -> dict[str, Any]:
        signature_name = body.get("signature_name") if isinstance(body, dict) else None
        if isinstance(body, dict) and "signature_name" in body and not isinstance(signature_name, str):
            raise invalid("'signature_name' key must be a string value.")  # null too, as TF Serving
        if verb != "predict":
            return await offload(examples_call, servable, signature_name, verb, body, tracked, big=True)
        sig = servable.signature(signature_name)
        tracked.signature = sig.name
        feeds, rows = await offload(codec.parse_predict, body, sig, big=big)
        others_waiting = requests_open is None or requests_open() > 1
        outputs = await core.predict_async(servable, sig.name, feeds, "rest", others_waiting)
        return await offload(codec.format_predict, outputs, rows, big=big)

    async def post_model(request: Request, path: str) -> Response:
        nonlocal inflight
        try:
            model, version, label, suffix = _parse_path("POST", path)
            verb = (suffix or ":")[1:]
            if verb not in VERBS:
                raise invalid(f"Malformed request: POST /v1/models/{path} (expected :predict, :classify or :regress)")
        except ServingError as exc:
            return error_response(exc)
        if inflight >= limits.max_inflight:
            return json_response({"error": f"server overloaded: more than {limits.max_inflight} requests in flight"}, 503)
        inflight += 1
        try:
            with core.track(model, verb, "rest") as tracked:
                gzipped = is_gzipped(request.headers.get("content-encoding"))
                body_bytes = await read_body(request)
                big = gzipped or len(body_bytes) > BIG_BODY_BYTES
                body = await offload(decode, body_bytes, gzipped, big=big)
                servable = core.resolve(model, version, label)
                tracked.version = str(servable.version)
                result = await serve(servable, verb, body, tracked, big)
                return await offload(json_response, result, big=big)
        except ServingError as exc:
            return error_response(exc)
        finally:
            inflight -= 1

    async def with_fast_path(scope: dict, receive: Any, send: Any) -> None:
        """POST /v1/models/... goes straight to its endpoint: FastAPI's routing,
        dependency solving and three middleware layers cost ~0.1 ms per
        request, and this endpoint uses none of them (it answers its own errors)."""
        root = scope["path"][:len(MODELS_ROOT)] if scope["type"] == "http" else ""
        if root != MODELS_ROOT and root.lower() == MODELS_ROOT:  # /V1/Models/...: a copy only then, not per request
            scope = {**scope, "path": MODELS_ROOT + scope["path"][len(MODELS_ROOT):]}
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(MODELS_PREFIX):
            return await app(scope, receive, send)
        try:
            response = await post_model(Request(scope, receive), scope["path"][len(MODELS_PREFIX):])
        except asyncio.CancelledError:
            # Only uvicorn cancels a request (a client hang-up does not): its graceful shutdown ran out
            # while this one was still being read or run. TF Serving's UNAVAILABLE, not uvicorn's plain 500.
            response = error_response(ServingError("UNAVAILABLE", "the server is shutting down; send the request again"))
        except Exception as exc:  # noqa: BLE001 - the same answer FastAPI's handler gives
            response = await internal_error(None, exc)
        await response(scope, receive, send)

    return with_fast_path
