"""Messages for the alert tests, written through the store the way the dispatcher leaves
them (final status, prices), and the evaluation's clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ids import iso, new_id
from gateway.store.engine import Connection

# a fixed evaluation time, mid-month: "the last 24 h" and "this month" are unambiguous
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_n = itertools.count()


def ago(**delta: float) -> str:
    return iso(NOW - timedelta(**delta))


async def add_messages(gateway: Any, tenant_id: str, count: int, **fields: Any) -> None:
    """`count` outbound SMS of `tenant_id` created an hour before NOW, delivered unless
    `fields` say otherwise."""

    def write(conn: Connection) -> None:
        for _ in range(count):
            row = {
                "id": new_id("msg"),
                "tenant_id": tenant_id,
                "channel": "sms",
                "direction": "outbound",
                "to_address": f"+336{next(_n):08d}",
                "status": "delivered",
                "created_at": ago(hours=1),
                "updated_at": ago(hours=1),
                **fields,
            }
            names = ", ".join(row)
            marks = ", ".join(f":{name}" for name in row)
            conn.execute(f"INSERT INTO channel_messages_log ({names}) VALUES ({marks})", row)

    await gateway.db.write_fn(write)
