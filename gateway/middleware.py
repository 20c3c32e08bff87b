"""Plain ASGI middleware (Starlette's trustedhost shape): request log, body size limit,
body read deadline."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError, PayloadTooLarge, RequestTimeout
from gateway.ids import random_hex

access_log = logging.getLogger("gateway.access")
error_log = logging.getLogger("gateway.error")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# nginx's code for "the client closed the connection before the answer"
CLIENT_CLOSED = 499


class RequestLogMiddleware:
    """One structured line per request; echoes X-Request-Id; turns any uncaught exception
    into the JSON 500 body (the traceback goes to the log, never to the client). A client
    that goes away before its body is read is no error of ours: its line says 499."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else random_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False
        detail: str | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # nothing was read in full, so nothing was written; there is no one to answer
            status, detail = CLIENT_CLOSED, "client disconnected before the request was read"
        except Exception:
            error_log.exception(
                "unhandled error", extra={"request_id": request_id, "path": scope["path"]}
            )
            if not response_started:
                await send_error(
                    send_wrapper,
                    ApiError(
                        "An unexpected error occurred; it has been logged with request id "
                        + request_id
                    ),
                )
        finally:
            state: dict[str, Any] = scope.get("state", {})
            extra = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "tenant_id": state.get("tenant_id"),
                "request_id": request_id,
            }
            if detail is not None:
                extra["detail"] = detail
            access_log.info("request", extra=extra)


class BodyLimitMiddleware:
    """413 for a body over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await send_error(
                        send,
                        PayloadTooLarge(
                            f"The request body exceeds {self.max_bytes} bytes",
                            details={"max_bytes": self.max_bytes},
                        ),
                    )
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(
                        f"The request body exceeds {self.max_bytes} bytes",
                        details={"max_bytes": self.max_bytes},
                    )
            return message

        await self.app(scope, limited_receive, send)


class BodyDeadlineMiddleware:
    """408 when a request body has not arrived in full `seconds` after the request started:
    a client that announces Content-Length: 100 and sends 10 bytes holds a worker only that
    long. The answer closes the connection, whose rest can no longer be read as a request."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive within {self.seconds:g} seconds",
                    details={"timeout_seconds": self.seconds},
                    headers={"Connection": "close"},
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, timed_receive, send)


async def send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
