"""BatchedWrites (the dispatcher's "sent" records): write functions queued together are
committed in one engine write, each caller gets its own result, and one that fails fails
alone — nothing of it is committed, every other one is. On the engine GATEWAY_TEST_ENGINE
names (SQLite by default)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.db import Database
from gateway.services.batched_writes import BatchedWrites
from gateway.store.engine import Connection, Engine, UniqueViolation
from gateway.store.postgres import PostgresEngine


@pytest.fixture
async def db(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    engine: Engine
    if os.environ.get("GATEWAY_TEST_ENGINE", "sqlite").strip().lower() == "postgres":
        engine = PostgresEngine(
            request.getfixturevalue("postgres_url"), write_connections=2, read_connections=1
        )
    else:
        engine = Database(tmp_path / "batched.sqlite3", read_connections=1)
    engine.start()
    await engine.write_fn(
        lambda c: c.execute("CREATE TABLE batch_items (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    )
    yield engine
    await engine.close()


def _insert(item: str, n: int) -> Callable[[Connection], int]:
    def write(conn: Connection) -> int:
        conn.execute("INSERT INTO batch_items (id, n) VALUES (?, ?)", (item, n))
        conn.execute("UPDATE batch_items SET n = n + 1 WHERE id = ?", (item,))
        return n + 1

    return write


async def _stored(db: Engine) -> dict[str, int]:
    rows = await db.read_fn(lambda c: c.execute("SELECT id, n FROM batch_items").fetchall())
    return {r["id"]: r["n"] for r in rows}


async def test_writes_queued_together_commit_in_one_write_with_their_own_results(
    db: Engine,
) -> None:
    writes = BatchedWrites(db)
    results = await asyncio.gather(*(writes.write(_insert(f"i{n}", n)) for n in range(10)))
    assert results == [n + 1 for n in range(10)]
    assert writes.batches == 1
    assert await _stored(db) == {f"i{n}": n + 1 for n in range(10)}


async def test_a_failing_write_fails_alone_and_leaves_nothing(db: Engine) -> None:
    await db.write_fn(lambda c: c.execute("INSERT INTO batch_items (id, n) VALUES ('taken', 0)"))
    writes = BatchedWrites(db)
    outcomes = await asyncio.gather(
        writes.write(_insert("a", 1)),
        writes.write(_insert("taken", 5)),
        writes.write(_insert("b", 2)),
        return_exceptions=True,
    )
    assert outcomes[0] == 2 and outcomes[2] == 3
    assert isinstance(outcomes[1], UniqueViolation)
    assert await _stored(db) == {"taken": 0, "a": 2, "b": 3}


async def test_writes_beyond_the_limit_go_in_further_batches(db: Engine) -> None:
    writes = BatchedWrites(db, limit=4)
    results = await asyncio.gather(*(writes.write(_insert(f"i{n}", n)) for n in range(10)))
    assert results == [n + 1 for n in range(10)]
    assert writes.batches == 3
    assert len(await _stored(db)) == 10
