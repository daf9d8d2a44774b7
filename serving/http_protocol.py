"""uvicorn's HTTP/1.1 protocol with a deadline on the request head, and JSON for requests it cannot parse.

uvicorn times out idle keep-alive connections and the server times out slow
bodies (Limits.body_timeout_s), but a client that connects and then sends its
request line and headers slowly, or nothing at all, holds its connection (and
a file descriptor) for ever: a handful of such clients exhaust the process's
descriptors and the server stops accepting. Here a connection whose request
head is not complete within the deadline is closed. There is no request yet,
so no HTTP answer can be given: the socket is closed, as a proxy would.

A request h11 cannot parse (a malformed Content-Length, a bad header line) is
answered 400 as uvicorn answers it, but with the body every other error of this
server has, `{"error": "..."}` in JSON, not uvicorn's plain text.
"""
from __future__ import annotations

import asyncio
import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadDeadlineH11Protocol(H11Protocol):
    """H11Protocol closing connections whose request head takes too long."""

    head_timeout_s = 30.0  # set per server by with_head_deadline()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()  # a connection that sends nothing at all is cut too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_head():
            self._arm_head_timer()
        else:
            self._disarm_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.trailing_data[0] and self._waiting_for_head():  # part of a pipelined request's head
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": msg}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _waiting_for_head(self) -> bool:
        """Part of a request head is buffered (or none has come on a new connection)."""
        if self.conn.their_state is not h11.IDLE:
            return False
        pending, _closed = self.conn.trailing_data
        return bool(pending) or self.cycle is None

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.logger.info("closing a connection whose request head took over %gs", self.head_timeout_s)
            self.transport.close()


def with_head_deadline(seconds: float) -> type[HeadDeadlineH11Protocol]:
    """The protocol class for one server's uvicorn.Config(http=...)."""
    return type("HeadDeadlineH11Protocol", (HeadDeadlineH11Protocol,), {"head_timeout_s": seconds})
