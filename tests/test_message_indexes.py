"""Every index on channel_messages_log is searched by a query of the gateway: each send
maintains all of them, so an index no query uses would be write cost for nothing. SQLite's
EXPLAIN QUERY PLAN of the store's own statements (captured as the store runs them) names
the index each one searches. The analytics indexes (ix_messages_analytics,
ix_messages_tenant_from) are proven by tests/test_analytics.py's plan tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.migrations import apply_migrations
from gateway.store import messages as store
from gateway.store.tenant_scope import TenantDB

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-12-02T10:00:00.000Z"
# each searched by a test of its own query's plan (tests/test_analytics.py)
PROVEN_ELSEWHERE = {"ix_messages_analytics", "ix_messages_tenant_from", "ix_messages_losing"}


class _Nothing:
    """The answer of a statement that was only explained."""

    rowcount = 0

    def fetchall(self) -> list[Any]:
        return []

    def fetchone(self) -> None:
        return None

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class PlanRecorder:
    """A Connection and an Engine whose statements are explained, not run."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.plans: list[tuple[str, str]] = []

    def execute(self, sql: str, params: Any = ()) -> _Nothing:
        if sql.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "DELETE")):
            for row in self.conn.execute("EXPLAIN QUERY PLAN " + sql, params):
                self.plans.append((sql, row[3]))
        return _Nothing()

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        self.execute(sql, params)
        return []

    async def fetchone(self, sql: str, params: Mapping[str, Any] | Any = ()) -> None:
        self.execute(sql, params)

    def searched(self) -> set[str]:
        return {
            word
            for _, detail in self.plans
            for word in detail.replace("(", " ").split()
            if word.startswith(("ix_messages_", "ux_messages_"))
        }


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[PlanRecorder]:
    path = tmp_path / "plans.sqlite3"
    apply_migrations(path, ROOT / "database" / "migrations")
    conn = sqlite3.connect(path)
    try:
        yield PlanRecorder(conn)
    finally:
        conn.close()


def message_indexes(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = "
        "'channel_messages_log' AND sql IS NOT NULL"
    )
    return {name for (name,) in rows}


async def test_every_message_index_is_searched_by_a_query(recorder: PlanRecorder) -> None:
    conn: Any = recorder
    tdb = TenantDB(conn, "ten_1")
    store.claim_due(conn, NOW, 50)  # the dispatcher: due messages, twins in flight
    store.price_due(conn, NOW, 50)
    store.poll_due(conn, NOW, 50)
    store.find_by_provider_id(conn, "twilio", "SM1")  # status callbacks
    store.unsettled_twins(conn, "twilio", "+33612345678", "+33939035761", "Hi")
    await store.recent_tenants_for_recipient(conn, "sms", "+33612345678")  # inbound SMS
    await store.get_by_idempotency_key(tdb, "key-1")  # every send with a key
    await store.list_messages(tdb, {"to": "+33612345678"}, 51, None)

    unused = message_indexes(recorder.conn) - PROVEN_ELSEWHERE - recorder.searched()
    assert not unused, f"no query searches {sorted(unused)}: drop it in a migration"
