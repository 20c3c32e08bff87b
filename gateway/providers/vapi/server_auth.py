"""Vapi's calls to our server URL carry the server secret: `X-Vapi-Secret`, or a Bearer
credential; compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from gateway.providers.base import WebhookRejected


def verify_server_secret(headers: Mapping[str, str], expected: str | None) -> None:
    given = headers.get("x-vapi-secret")
    if given is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else None
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise WebhookRejected("secret mismatch")
