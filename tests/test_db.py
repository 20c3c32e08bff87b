from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.db import Database, TenantDB, TenantScopeError
from gateway.store.engine import DatabaseError, UniqueViolation


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "t.sqlite3", read_connections=2)
    database.start()
    await database.execute_write(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, "
        "name TEXT NOT NULL UNIQUE)"
    )
    yield database  # type: ignore[misc]
    await database.close()


async def test_concurrent_writes_are_all_committed_in_few_transactions(db: Database) -> None:
    commits_before = db.commits
    await asyncio.gather(
        *(
            db.execute_write("INSERT INTO items (tenant_id, name) VALUES (?, ?)", ("t", f"n{i}"))
            for i in range(300)
        )
    )
    rows = await db.fetchall("SELECT COUNT(*) AS n FROM items")
    assert rows[0]["n"] == 300
    assert db.commits - commits_before < 300, "waiting writes should share a commit"


async def test_a_failing_write_does_not_undo_its_batch_neighbours(db: Database) -> None:
    await db.execute_write("INSERT INTO items (tenant_id, name) VALUES ('t', 'taken')")
    results = await asyncio.gather(
        db.execute_write("INSERT INTO items (tenant_id, name) VALUES ('t', 'a')"),
        db.execute_write("INSERT INTO items (tenant_id, name) VALUES ('t', 'taken')"),
        db.execute_write("INSERT INTO items (tenant_id, name) VALUES ('t', 'b')"),
        return_exceptions=True,
    )
    # the engine's error, the driver's as its cause
    assert isinstance(results[1], UniqueViolation)
    assert isinstance(results[1].__cause__, sqlite3.IntegrityError)
    names = {r["name"] for r in await db.fetchall("SELECT name FROM items")}
    assert names == {"taken", "a", "b"}


async def test_a_write_function_is_atomic(db: Database) -> None:
    def two_inserts(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items (tenant_id, name) VALUES ('t', 'first')")
        conn.execute("INSERT INTO items (tenant_id, name) VALUES ('t', 'first')")

    with pytest.raises(UniqueViolation) as raised:
        await db.write_fn(two_inserts)
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
    assert await db.fetchall("SELECT * FROM items") == []


async def test_durability_settings(db: Database) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA busy_timeout").fetchone()[0],
        )

    journal, synchronous, busy = await db.write_fn(pragmas)
    assert journal == "wal"
    assert synchronous == 2  # FULL
    assert busy > 0


async def test_read_connections_cannot_write(db: Database) -> None:
    with pytest.raises(DatabaseError) as raised:
        await db.read_fn(
            lambda conn: conn.execute("INSERT INTO items (tenant_id, name) VALUES ('t', 'x')")
        )
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)


async def test_tenant_scope_fills_the_tenant_and_refuses_unscoped_sql(db: Database) -> None:
    a, b = TenantDB(db, "ten_a"), TenantDB(db, "ten_b")
    await a.execute("INSERT INTO items (tenant_id, name) VALUES (:tenant_id, 'mine')")
    await b.execute("INSERT INTO items (tenant_id, name) VALUES (:tenant_id, 'theirs')")
    rows = await a.fetchall("SELECT name FROM items WHERE tenant_id = :tenant_id")
    assert [r["name"] for r in rows] == ["mine"]
    with pytest.raises(TenantScopeError):
        await a.fetchall("SELECT name FROM items")
    with pytest.raises(TenantScopeError):
        await a.execute("DELETE FROM items")
    # the caller cannot forge another tenant's id: the scope overrides it
    rows = await a.fetchall(
        "SELECT name FROM items WHERE tenant_id = :tenant_id", {"tenant_id": "ten_b"}
    )
    assert [r["name"] for r in rows] == ["mine"]


async def test_a_cancelled_write_never_kills_the_writer(db: Database) -> None:
    import threading

    gate = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        gate.wait(5)
        conn.execute("INSERT INTO items (tenant_id, name) VALUES ('t', 'slow')")

    blocker = asyncio.ensure_future(db.write_fn(slow))
    await asyncio.sleep(0.05)
    waiting = asyncio.ensure_future(
        db.execute_write("INSERT INTO items (tenant_id, name) VALUES ('t', 'given-up')")
    )
    await asyncio.sleep(0.05)
    waiting.cancel()  # the caller gives up while its write is still queued
    gate.set()
    await blocker
    await db.execute_write("INSERT INTO items (tenant_id, name) VALUES ('t', 'after')")
    names = {r["name"] for r in await db.fetchall("SELECT name FROM items")}
    assert names == {"slow", "after"}
