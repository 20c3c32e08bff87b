"""The PostgreSQL engine keeps the promises of `gateway.store.engine` the way the SQLite one
does: the store's placeholders, rows by name and position, the engine's errors, one
transaction per write in which a caught failure undoes only its own statement, read-only
reads, and SQLite's value shapes (0/1 booleans, integer sums)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from gateway.store import engine
from gateway.store.engine import Connection, Engine
from gateway.store.postgres import PostgresEngine
from gateway.store.postgres_sql import to_psycopg

NOW = "2026-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
        ("UPDATE t SET a = :a WHERE id = :id", "UPDATE t SET a = %(a)s WHERE id = %(id)s"),
        ("SELECT '100%' AS p, x % 2 FROM t", "SELECT '100%%' AS p, x %% 2 FROM t"),
        ("SELECT 'a ? b :c' || ? FROM t", "SELECT 'a ? b :c' || %s FROM t"),
        ("SELECT 'it''s ?', :x", "SELECT 'it''s ?', %(x)s"),
        ('SELECT "odd?name" FROM t WHERE "x:y" = ?', 'SELECT "odd?name" FROM t WHERE "x:y" = %s'),
        ("SELECT x::text, CAST(:v AS int)", "SELECT x::text, CAST(%(v)s AS int)"),
        ("SELECT 1 -- why? 5% of :all\nWHERE a = ?", "SELECT 1 -- why? 5%% of :all\nWHERE a = %s"),
        ("SELECT '10:30', ?", "SELECT '10:30', %s"),
    ],
)
def test_placeholders_become_psycopgs_outside_literals_and_comments(
    sql: str, expected: str
) -> None:
    assert to_psycopg(sql) == expected


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[PostgresEngine]:
    started = PostgresEngine(postgres_url, write_connections=2, read_connections=2)
    started.start()
    await started.write_fn(
        lambda conn: conn.execute(
            "INSERT INTO tenants (id, slug, name, created_at, updated_at) "
            "VALUES ('ten_1', 'acme', 'Acme', ?, ?)",
            (NOW, NOW),
        )
    )
    try:
        yield started
    finally:
        await started.close()


def test_the_engine_is_an_engine() -> None:
    chosen: Engine = PostgresEngine("postgresql://127.0.0.1:9/none")
    assert chosen.dialect == "postgres"


async def test_rows_answer_by_name_in_any_case_by_position_and_as_a_mapping(
    db: PostgresEngine,
) -> None:
    row = await db.fetchone("SELECT id, slug AS Handle, name FROM tenants WHERE slug = ?", ["acme"])
    assert row is not None
    assert (row["id"], row[0], row["handle"], row["HANDLE"], row[-1]) == (
        "ten_1",
        "ten_1",
        "acme",
        "acme",
        "Acme",
    )
    assert row.keys() == ["id", "handle", "name"]
    assert dict(zip(row.keys(), row, strict=True)) == dict(row)
    assert len(row) == 3 and list(row) == ["ten_1", "acme", "Acme"]
    with pytest.raises(IndexError):
        row["missing"]
    assert await db.fetchone("SELECT id FROM tenants WHERE slug = :slug", {"slug": "x"}) is None


async def test_values_keep_sqlites_shapes(db: PostgresEngine) -> None:
    row = await db.fetchone(
        "SELECT COUNT(*) AS n, SUM(CAST(2 AS BIGINT)) AS total, SUM(1.5) AS half, "
        "MAX(status) IN ('active') AS active, '100%' AS percent FROM tenants"
    )
    assert row is not None
    assert (row["n"], row["total"], row["half"], row["active"], row["percent"]) == (
        1,
        2,
        1.5,
        1,
        "100%",
    )
    assert type(row["total"]) is int and type(row["active"]) is int
    # a Python bool is bound as the 0/1 integer the schema stores
    await db.execute_write(
        "INSERT INTO channel_configurations (id, tenant_id, channel_type, enabled, "
        "created_at, updated_at) VALUES ('cfg_1', 'ten_1', 'sms', ?, ?, ?)",
        (True, NOW, NOW),
    )
    enabled = await db.fetchone(
        "SELECT enabled FROM channel_configurations WHERE enabled = ?", [True]
    )
    assert enabled is not None and enabled["enabled"] == 1


async def test_driver_errors_are_the_engines(db: PostgresEngine) -> None:
    duplicate = (
        "INSERT INTO tenants (id, slug, name, created_at, updated_at) VALUES (?, 'acme', 'A', ?, ?)"
    )
    with pytest.raises(engine.UniqueViolation) as unique:
        await db.execute_write(duplicate, ("ten_2", NOW, NOW))
    assert isinstance(unique.value.__cause__, psycopg.errors.UniqueViolation)
    with pytest.raises(engine.IntegrityError) as check:
        await db.execute_write("UPDATE tenants SET status = 'gone' WHERE id = 'ten_1'")
    assert not isinstance(check.value, engine.UniqueViolation)
    with pytest.raises(engine.IntegrityError):  # settings must be JSON, as on SQLite
        await db.execute_write(
            "INSERT INTO channel_configurations (id, tenant_id, channel_type, settings, "
            "created_at, updated_at) VALUES ('cfg_1', 'ten_1', 'sms', '{nope', ?, ?)",
            (NOW, NOW),
        )
    with pytest.raises(engine.DatabaseError) as syntax:
        await db.fetchall("SELEC 1")
    assert not isinstance(syntax.value, engine.IntegrityError)


async def test_a_failing_write_commits_nothing(db: PostgresEngine) -> None:
    def write(conn: Connection) -> None:
        conn.execute("UPDATE tenants SET name = 'Renamed' WHERE id = 'ten_1'")
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        await db.write_fn(write)
    row = await db.fetchone("SELECT name FROM tenants WHERE id = 'ten_1'")
    assert row is not None and row["name"] == "Acme"


async def test_a_caught_failure_undoes_only_its_own_statement(db: PostgresEngine) -> None:
    """As on SQLite: PostgreSQL aborts the whole transaction on an error, so a write that
    catches one and goes on would otherwise lose (silently) what it did before it."""
    calls: list[str] = []

    def write(conn: Connection) -> str:
        calls.append("run")
        conn.execute("UPDATE tenants SET name = 'Before' WHERE id = 'ten_1'")
        try:
            conn.execute(
                "INSERT INTO tenants (id, slug, name, created_at, updated_at) "
                "VALUES ('ten_2', 'acme', 'Twin', ?, ?)",
                (NOW, NOW),
            )
        except engine.UniqueViolation:
            conn.execute("UPDATE tenants SET slug = 'acme-after' WHERE id = 'ten_1'")
            return "recovered"
        return "inserted"

    assert await db.write_fn(write) == "recovered"
    rows = await db.fetchall("SELECT id, slug, name FROM tenants ORDER BY id")
    assert [tuple(r) for r in rows] == [("ten_1", "acme-after", "Before")]

    def swallow(conn: Connection) -> bool:  # the failure is the function's last statement
        conn.execute("UPDATE tenants SET name = 'Kept' WHERE id = 'ten_1'")
        try:
            conn.execute("UPDATE tenants SET status = 'gone' WHERE id = 'ten_1'")
        except engine.IntegrityError:
            return False
        return True

    assert await db.write_fn(swallow) is False
    kept = await db.fetchone("SELECT name, status FROM tenants WHERE id = 'ten_1'")
    assert kept is not None and tuple(kept) == ("Kept", "active")


async def test_reads_cannot_write(db: PostgresEngine) -> None:
    with pytest.raises(engine.DatabaseError, match="read-only"):
        await db.read_fn(lambda conn: conn.execute("DELETE FROM tenants"))
    assert len(await db.fetchall("SELECT id FROM tenants")) == 1


async def test_statements_without_rows_fetch_nothing_and_count_what_they_changed(
    db: PostgresEngine,
) -> None:
    def write(conn: Connection) -> tuple[Any, list[Any], int, int]:
        changed = conn.execute("UPDATE tenants SET name = 'B' WHERE id = 'ten_1'")
        many = conn.executemany(
            "INSERT INTO tenant_numbers (e164, tenant_id, kind, created_at) "
            "VALUES (:e164, 'ten_1', 'forwarding', :now)",
            [{"e164": f"+3361234567{n}", "now": NOW} for n in range(3)],
        )
        return changed.fetchone(), changed.fetchall(), changed.rowcount, many.rowcount

    assert await db.write_fn(write) == (None, [], 1, 3)


async def test_concurrent_writes_each_commit_once(db: PostgresEngine) -> None:
    def insert(n: int) -> Any:
        return lambda conn: (
            conn.execute(
                "INSERT INTO tenant_numbers (e164, tenant_id, kind, created_at) "
                "VALUES (?, 'ten_1', 'dedicated', ?)",
                (f"+336000000{n:02d}", NOW),
            ).rowcount
        )

    counts = await asyncio.gather(*(db.write_fn(insert(n)) for n in range(40)))
    assert counts == [1] * 40
    assert len(await db.fetchall("SELECT e164 FROM tenant_numbers")) == 40
    assert threading.active_count() < 40  # the engine's threads, not one per call


async def test_an_unreachable_database_fails_at_start() -> None:
    from gateway.sandbox.server import free_port

    unreachable = PostgresEngine(
        f"postgresql://postgres@127.0.0.1:{free_port()}/none", connect_timeout=1
    )
    with pytest.raises(engine.DatabaseError, match="did not answer"):
        unreachable.start()


@pytest.mark.parametrize("writers", [1, 3])
async def test_an_instance_runs_as_many_writes_at_once_as_it_has_write_connections(
    postgres_url: str, writers: int
) -> None:
    """WRITE_CONNECTIONS write transactions of one instance run at once (which is why the
    store locks its check-then-write steps in SQL); with one, they run one after another."""
    db = PostgresEngine(postgres_url, write_connections=writers, read_connections=1)
    db.start()
    try:

        def timed(conn: Connection) -> tuple[Any, Any]:
            started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
            conn.execute("SELECT pg_sleep(0.2)")
            return started, conn.execute("SELECT clock_timestamp()").fetchone()[0]

        spans = await asyncio.gather(*(db.write_fn(timed) for _ in range(3)))
        overlap = max(start for start, _ in spans) < min(end for _, end in spans)
        assert overlap == (writers > 1)
    finally:
        await db.close()
