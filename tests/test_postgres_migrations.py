"""Migrations on PostgreSQL: the same files by name as SQLite's, in the same `d1_migrations`
table, each applied once even when several instances start together."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from gateway.migrations import (
    MigrationError,
    apply_postgres_migrations,
    discover,
    pending,
    postgres_directory,
)
from gateway.store.postgres import PostgresEngine

ROOT = Path(__file__).resolve().parents[1]
SQLITE_DIR = ROOT / "database" / "migrations"
POSTGRES_DIR = ROOT / "database" / "migrations_postgres"


def test_every_sqlite_migration_has_its_postgres_twin_by_name() -> None:
    assert postgres_directory(SQLITE_DIR) == POSTGRES_DIR
    assert [m.name for m in discover(POSTGRES_DIR)] == [m.name for m in discover(SQLITE_DIR)]


def _applied(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, name FROM d1_migrations ORDER BY id").fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def test_a_new_database_gets_every_migration_once(empty_postgres_url: str) -> None:
    names = [m.name for m in discover(POSTGRES_DIR)]
    assert apply_postgres_migrations(empty_postgres_url, POSTGRES_DIR) == names
    assert apply_postgres_migrations(empty_postgres_url, POSTGRES_DIR) == []
    assert [name for _, name in _applied(empty_postgres_url)] == names


def test_instances_starting_together_apply_each_file_once(empty_postgres_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(5)

    def instance() -> None:
        gate.wait()
        try:
            results.append(apply_postgres_migrations(empty_postgres_url, POSTGRES_DIR))
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=instance) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    names = [m.name for m in discover(POSTGRES_DIR)]
    assert sorted(results, key=len) == [[], [], [], [], names]
    assert [name for _, name in _applied(empty_postgres_url)] == names


def test_a_failing_file_leaves_no_trace_and_stops_the_run(
    empty_postgres_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations_postgres"
    shutil.copytree(POSTGRES_DIR, folder)
    (folder / "0006_broken.sql").write_text(
        "CREATE TABLE half_done (id TEXT PRIMARY KEY);\nALTER TABLE nowhere ADD COLUMN x TEXT;\n"
    )
    (folder / "0007_after.sql").write_text("CREATE TABLE after_it (id TEXT PRIMARY KEY);\n")
    with pytest.raises(MigrationError, match=r"0006_broken\.sql") as failed:
        apply_postgres_migrations(empty_postgres_url, folder)
    assert failed.value.name == "0006_broken.sql"
    assert [name for _, name in _applied(empty_postgres_url)][-1] == "0005_reliability.sql"
    with psycopg.connect(empty_postgres_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
    assert "half_done" not in tables and "after_it" not in tables


async def test_readiness_sees_pending_postgres_migrations(empty_postgres_url: str) -> None:
    db = PostgresEngine(empty_postgres_url, write_connections=1, read_connections=1)
    db.start()
    try:
        names = [m.name for m in discover(POSTGRES_DIR)]
        assert await db.read_fn(lambda conn: pending(conn, SQLITE_DIR)) == names
        await asyncio.to_thread(apply_postgres_migrations, empty_postgres_url, POSTGRES_DIR)
        assert await db.read_fn(lambda conn: pending(conn, SQLITE_DIR)) == []
    finally:
        await db.close()
