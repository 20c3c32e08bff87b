"""Reading a tenant's message log: pages of messages, one message with its events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import NotFound
from gateway.ids import iso
from gateway.store import messages as store
from gateway.store.tenant_scope import TenantDB


@dataclass(frozen=True)
class MessageFilter:
    """What a page of messages is narrowed to; None leaves a field open. `to` is as stored
    (an address lowercased, a number in E.164); [since, until) bounds the creation time."""

    channel: str | None = None
    status: str | None = None
    to: str | None = None
    message_type: str | None = None
    direction: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def list_messages(
    tdb: TenantDB, where: MessageFilter, limit: int, cursor: str | None
) -> list[dict[str, Any]]:
    """Up to `limit` messages, newest first, as the API shows them."""
    filters = {
        "channel": where.channel,
        "status": where.status,
        "to": where.to,
        "message_type": where.message_type,
        "direction": where.direction,
        "since": iso(where.since) if where.since else None,
        "until": iso(where.until) if where.until else None,
    }
    rows = await store.list_messages(tdb, filters, limit, cursor)
    return [store.public_message(row) for row in rows]


async def get_message(tdb: TenantDB, message_id: str) -> dict[str, Any]:
    """One message as the API shows it, with its events oldest first."""
    row = await store.get_message(tdb, message_id)
    if row is None:
        raise NotFound(f"No message {message_id!r}", code="message_not_found")
    message = store.public_message(row)
    message["events"] = await store.list_events(tdb, message_id)
    return message
