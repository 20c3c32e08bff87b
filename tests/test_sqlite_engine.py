"""The SQLite engine keeps the promises of `gateway.store.engine`: its connection says its
dialect, and a statement that fails raises the engine's error (the driver's as its cause),
wherever it fails: in a write function, on a read connection, or opening the file."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.db import Database, TenantDB
from gateway.store.engine import Connection, DatabaseError, IntegrityError, UniqueViolation
from gateway.store.tenant_scope import ScopedConnection

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = (
    "CREATE TABLE owners (id TEXT PRIMARY KEY)",
    "CREATE TABLE items (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, "
    "name TEXT NOT NULL UNIQUE, size INTEGER CHECK (size > 0), "
    "owner_id TEXT REFERENCES owners (id), code TEXT)",
    "CREATE UNIQUE INDEX ux_items_code ON items (tenant_id, code) WHERE code IS NOT NULL",
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "engine.sqlite3", read_connections=1)
    database.start()
    for statement in SCHEMA:
        await database.execute_write(statement)
    await database.execute_write(
        "INSERT INTO items (id, tenant_id, name, size, code) VALUES ('i1', 't', 'one', 1, 'c1')"
    )
    yield database
    await database.close()


def _insert(**values: Any) -> tuple[str, dict[str, Any]]:
    row = {"id": "i2", "tenant_id": "t", "name": "two", "size": 2, "owner_id": None, "code": None}
    row.update(values)
    return (
        "INSERT INTO items (id, tenant_id, name, size, owner_id, code) "
        "VALUES (:id, :tenant_id, :name, :size, :owner_id, :code)",
        row,
    )


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"id": "i1"}, UniqueViolation),  # primary key
        ({"name": "one"}, UniqueViolation),  # UNIQUE column
        ({"code": "c1"}, UniqueViolation),  # partial unique index
        ({"size": 0}, IntegrityError),  # CHECK
        ({"name": None}, IntegrityError),  # NOT NULL
        ({"owner_id": "nobody"}, IntegrityError),  # foreign key
    ],
)
async def test_a_refused_write_raises_the_engines_error_for_its_constraint(
    db: Database, values: dict[str, Any], error: type[IntegrityError]
) -> None:
    sql, params = _insert(**values)
    with pytest.raises(IntegrityError) as raised:
        await db.execute_write(sql, params)
    assert type(raised.value) is error
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)
    assert "constraint failed" in str(raised.value)


async def test_a_write_function_catches_the_engines_error_and_carries_on(db: Database) -> None:
    def write(conn: Connection) -> str:
        sql, params = _insert(name="one")
        try:
            conn.execute(sql, params)
        except UniqueViolation:
            sql, params = _insert(name="two")
            conn.execute(sql, params)
            return "second name"
        return "first name"

    assert await db.write_fn(write) == "second name"
    rows = await db.fetchall("SELECT name FROM items ORDER BY name")
    assert [r["name"] for r in rows] == ["one", "two"]


@pytest.mark.parametrize(
    "run",
    [
        lambda db: db.execute_write("INSERT INTO nowhere VALUES (1)"),
        lambda db: db.fetchall("SELECT * FROM nowhere"),
        lambda db: db.fetchone("SELEKT 1"),
        lambda db: db.write_fn(lambda c: c.executemany("INSERT INTO nowhere VALUES (?)", [(1,)])),
    ],
    ids=["write", "read", "syntax", "executemany"],
)
async def test_any_other_failure_is_a_database_error(
    db: Database, run: Callable[[Database], Any]
) -> None:
    with pytest.raises(DatabaseError) as raised:
        await run(db)
    assert not isinstance(raised.value, IntegrityError)
    assert isinstance(raised.value.__cause__, sqlite3.Error)


async def test_a_failure_while_fetching_rows_is_a_database_error(db: Database) -> None:
    # the first row is fine (computed by execute), the second fails in fetchall
    await db.execute_write("CREATE TABLE docs (n INTEGER, body TEXT)")
    await db.execute_write("INSERT INTO docs VALUES (1, '{}'), (2, 'not json')")
    sql = "SELECT json_extract(body, '$.a') FROM docs"  # no ORDER BY: no sort in execute
    for run in (db.fetchall, lambda q: db.write_fn(lambda c: c.execute(q).fetchall())):
        with pytest.raises(DatabaseError) as raised:
            await run(sql)
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert "malformed JSON" in str(raised.value)


async def test_a_file_that_cannot_be_opened_is_a_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as raised:
        Database(tmp_path).start()  # a directory, not a database file
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    assert "unable to open" in str(raised.value)


async def test_a_read_connection_that_cannot_open_is_a_database_error(tmp_path: Path) -> None:
    database = Database(tmp_path / "gone.sqlite3", read_connections=1)
    database.start()
    try:
        (tmp_path / "gone.sqlite3").unlink()  # before the reader's first connection
        with pytest.raises(DatabaseError) as raised:
            await database.fetchall("SELECT 1")
        assert isinstance(raised.value.__cause__, sqlite3.Error)
    finally:
        await database.close()


async def test_every_connection_names_its_dialect(db: Database) -> None:
    tdb = TenantDB(db, "t")
    assert db.dialect == tdb.dialect == "sqlite"
    assert await db.read_fn(lambda conn: conn.dialect) == "sqlite"
    assert await db.write_fn(lambda conn: conn.dialect) == "sqlite"
    assert await tdb.write_fn(lambda conn: (type(conn), conn.dialect)) == (
        ScopedConnection,
        "sqlite",
    )


def test_a_database_that_cannot_be_opened_ends_a_command_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "wrangler_like.toml", tmp_path / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", tmp_path / "database")
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("GATEWAY_", "ENCRYPTION_", "ADMIN_", "DATABASE_", "TWILIO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ADMIN_API_KEY", "a" * 32)
    monkeypatch.setenv("ENCRYPTION_KEYS", "k1:" + "A" * 43 + "=")
    (tmp_path / "a-directory").mkdir()
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "a-directory"))
    code = main(["migrate"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("gateway: ") and err.strip().count("\n") == 0
    assert "unable to open database file" in err


async def test_a_closed_database_is_whole_in_its_file(tmp_path: Path) -> None:
    """After a clean stop, the database file alone holds every committed write (the WAL was
    checkpointed into it): a backup that copies only the file misses nothing. The writer used
    to close before the read-only readers, and a read-only connection closing last cannot
    checkpoint, so the writes stayed in `-wal` beside the file."""
    path = tmp_path / "whole.sqlite3"
    database = Database(path, read_connections=2)
    database.start()
    await database.execute_write("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    for n in range(50):
        await database.execute_write("INSERT INTO notes (body) VALUES (?)", (f"note {n}",))
    assert len(await database.fetchall("SELECT id FROM notes")) == 50  # the readers open
    await database.close()

    copy = tmp_path / "copy.sqlite3"
    shutil.copy(path, copy)  # the file alone, not its -wal
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT COUNT(*) FROM notes").fetchone() == (50,)
