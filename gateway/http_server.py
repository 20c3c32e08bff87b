"""How the gateway runs under uvicorn: the read deadlines and the options `gateway serve`
passes to `uvicorn.run`.

uvicorn closes a connection that stays idle `timeout_keep_alive` seconds after a response,
but nothing bounds a client that opens a connection and sends half of its headers, slowly or
never: it holds the connection forever. `HeaderDeadlineProtocol` is uvicorn's own HTTP
protocol with that bound: the request line and headers must arrive within
HEADER_READ_TIMEOUT_SECONDS of the connection opening (or of the previous response), and
within MAX_HEADER_BYTES, else the client gets a 408 (or 431) in the JSON error body and the
connection is closed. The close lingers (as nginx's `lingering_close` does): the server shuts
its side for writing and drains what the client still sends for up to LINGER_SECONDS, because a
socket closed with unread bytes arriving answers them with a reset, and a reset can destroy the
error response before the client has read it. The body has its own deadline,
BODY_READ_TIMEOUT_SECONDS, kept by `middleware.BodyDeadlineMiddleware` since the application
reads the body.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from gateway.config import Settings
from gateway.settings_model import default_of

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpProtocol
except ImportError:  # pragma: no cover - uvicorn without its [standard] extra
    from uvicorn.protocols.http.h11_impl import (  # type: ignore[assignment]
        H11Protocol as _HttpProtocol,
    )

KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 64 * 1024
LINGER_SECONDS = 2.0
_HEADER_TIMEOUT: float = default_of("HEADER_READ_TIMEOUT_SECONDS")


@dataclass(frozen=True)
class ReadDeadlines:
    headers: float
    body: float


def read_deadlines(settings: Settings) -> ReadDeadlines:
    typed = settings.typed  # both checked at start-up: more than 0, at most 3600
    return ReadDeadlines(typed.header_read_timeout_seconds, typed.body_read_timeout_seconds)


def _raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class HeaderDeadlineProtocol(_HttpProtocol):
    """uvicorn's HTTP protocol, with a deadline and a size limit on reading headers."""

    header_timeout: float = _HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._linger: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # refused: what still arrives is drained, not parsed
        before = self.cycle
        super().data_received(data)
        if self._header_timer is None:
            return
        if self.cycle is not before:  # the headers are complete: a request started
            self._stop_waiting()
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(
                _raw_error(
                    431,
                    "Request Header Fields Too Large",
                    "headers_too_large",
                    f"The request line and headers exceed {MAX_HEADER_BYTES} bytes",
                )
            )

    def on_response_complete(self) -> None:
        # answered before its body arrived (a 413 on Content-Length, a 401): what still comes
        # is that body, never a next request's headers, so the connection ends here
        unread_body = self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if unread_body:
            self._close_lingering()
            return
        idle = self.cycle is None or self.cycle.response_complete
        if idle:
            self._await_headers()

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_waiting(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered
        if not self._header_bytes:
            self.transport.close()  # an idle connection: nothing to answer
            return
        self._refuse(
            _raw_error(
                408,
                "Request Timeout",
                "request_timeout",
                f"The request headers did not arrive within {self.header_timeout:g} seconds",
            )
        )

    def _refuse(self, response: bytes) -> None:
        self._stop_waiting()
        if self.transport.is_closing() or self._linger is not None:
            return
        self.transport.write(response)
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Our side is shut for writing at once; the client's remaining bytes are drained
        until it closes its side or LINGER_SECONDS pass."""
        self._stop_waiting()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.transport.resume_reading()
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `gateway serve` adds to `uvicorn.run(app, host=…, port=…)`."""
    return server_options(read_deadlines(settings).headers)


def server_options(header_timeout: float = _HEADER_TIMEOUT) -> dict[str, Any]:
    """The uvicorn options of any server run like the gateway (bench/ceiling.py too)."""
    protocol = type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout}
    )
    return {
        "http": protocol,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
