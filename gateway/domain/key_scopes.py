"""What a tenant API key may do: `read` (lists, KPIs, timeline), `send` (messages, channel
tests, bookings) and `config` (channel settings and toggles). A key holds one or more; the
endpoints declare the one they need (`gateway.routing.Endpoint.scope`).

Stored on `api_keys.scopes` as the held scopes in the order of `ALL_SCOPES`, space-separated
(the OAuth 2.0 convention), so the column's CHECK can list every valid value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

KeyScope = Literal["read", "send", "config"]
ALL_SCOPES: tuple[KeyScope, ...] = get_args(KeyScope)


def encode_scopes(scopes: Iterable[KeyScope]) -> str:
    held = set(scopes)
    if not held:
        raise ValueError("a key needs at least one scope")
    return " ".join(s for s in ALL_SCOPES if s in held)


def decode_scopes(stored: str) -> tuple[KeyScope, ...]:
    held = set(stored.split())
    return tuple(s for s in ALL_SCOPES if s in held)
