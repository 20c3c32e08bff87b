"""The console's ASGI middleware: the CSRF check of every non-GET request, and the security
headers of every answer.

CSRF: the session holds a random token; every form carries it as the hidden `csrf_token`
field and every htmx request as the `X-CSRF-Token` header (set once in base.html). A POST
without it, or with another session's, is refused with 403 before any handler runs. The
session cookie is also `SameSite=Strict`, so another site's form cannot even send it.

Headers: a Content-Security-Policy that allows scripts, styles, images and requests from
the gateway itself only (the vendored htmx and Alpine.js CSP build need no `eval` and no
inline script), no framing, no referrer beyond the gateway, and no caching of pages.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.console.form_body import FORM_TYPE, parse_form
from gateway.console.session import csrf_token_of

if TYPE_CHECKING:
    from gateway.wiring import Gateway

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)


class CsrfMiddleware:
    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        expected = csrf_token_of(request, self.gateway)
        sent = request.headers.get(CSRF_HEADER)
        body = b""
        if sent is None:
            # a plain form post: read the body for the hidden field, then hand it on
            body = await request.body()
            if request.headers.get("content-type", "").startswith(FORM_TYPE):
                field = parse_form(body).get(CSRF_FIELD)
                sent = field if isinstance(field, str) else None
        if expected is None or sent is None or not hmac.compare_digest(sent, expected):
            from gateway.console.errors import csrf_refused

            response = csrf_refused(request)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive) if body else receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    done = False

    async def replayed() -> Message:
        nonlocal done
        if done:
            return await receive()
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/console/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, with_headers)
