"""One error type for REST and gRPC, so both answer with TF Serving's codes."""
from __future__ import annotations

import grpc

# TF Serving's mapping of canonical error codes to HTTP statuses (http_server.cc).
HTTP_STATUS = {
    "CANCELLED": 499,  # the client went away; nothing reads the answer (nginx's "client closed request")
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
    "UNKNOWN": 500,
}


class ServingError(Exception):
    """A request that cannot be served, with the canonical code clients key on."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code if code in HTTP_STATUS else "UNKNOWN"
        self.message = message
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        """TF Serving's mapping, unless a more precise HTTP status applies (413)."""
        return self._http_status or HTTP_STATUS[self.code]

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return getattr(grpc.StatusCode, self.code)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)
