"""Migrations in wrangler's D1 convention: `NNNN_name.sql` files applied in order, each
atomically, recorded in `d1_migrations(id, name, applied_at)` exactly as wrangler does."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.db import connect
from gateway.store.engine import Connection
from gateway.store.migration_files import Migration, MigrationError, discover

if TYPE_CHECKING:
    from gateway.config import Settings

__all__ = ["Migration", "MigrationError", "applied", "apply_migrations", "discover", "pending"]


def _ensure_table(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, "
        "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
    )


_TABLE_EXISTS = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    "postgres": "SELECT 1 FROM information_schema.tables "
    "WHERE table_schema = current_schema() AND table_name = ?",
}


def _dialect(conn: object) -> str:
    # a plain sqlite3.Connection (tests, tools) has no dialect: it is SQLite
    return str(getattr(conn, "dialect", "sqlite"))


def applied(conn: Connection, table: str = "d1_migrations") -> list[str]:
    exists = conn.execute(_TABLE_EXISTS[_dialect(conn)], (table,)).fetchone()
    if not exists:
        return []
    return [row[0] for row in conn.execute(f"SELECT name FROM {table} ORDER BY id").fetchall()]


def pending(conn: Connection, directory: Path, table: str = "d1_migrations") -> list[str]:
    if _dialect(conn) == "postgres":
        directory = postgres_directory(directory)
    done = set(applied(conn, table))
    return [m.name for m in discover(directory) if m.name not in done]


def apply_migrations(db_path: Path, directory: Path, table: str = "d1_migrations") -> list[str]:
    """Apply pending files in order; stop at the first failure (raising MigrationError).
    Returns the names applied; an up-to-date database gives []."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ValueError(f"bad migrations table name {table!r}")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(db_path)
    done: list[str] = []
    try:
        _ensure_table(conn, table)
        already = set(applied(conn, table))
        for migration in discover(directory):
            if migration.name in already:
                continue
            sql = migration.path.read_text()
            # executescript runs the whole file; wrapping it in our own BEGIN/COMMIT makes the
            # file atomic, which D1 also guarantees per migration.
            script = (
                "BEGIN IMMEDIATE;\n"
                f"{sql}\n;\n"
                f"INSERT INTO {table} (name) VALUES ('{migration.name}');\n"
                "COMMIT;"
            )
            try:
                conn.executescript(script)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise MigrationError(migration.name, str(exc)) from exc
            done.append(migration.name)
    finally:
        conn.close()
    return done


def postgres_directory(directory: Path) -> Path:
    """The PostgreSQL twin of a migrations folder: `<folder>_postgres` beside it, else the
    package's own `database/migrations_postgres`."""
    twin = directory.with_name(f"{directory.name}_postgres")
    if twin.is_dir():
        return twin
    return Path(__file__).resolve().parent.parent / "database" / "migrations_postgres"


def apply_postgres_migrations(url: str, directory: Path, table: str = "d1_migrations") -> list[str]:
    """`apply_migrations` on the PostgreSQL database at `url`, with the files of `directory`
    (see `postgres_directory`); instances starting together apply each file once."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ValueError(f"bad migrations table name {table!r}")
    from gateway.store.postgres_migrations import apply  # psycopg only for PostgreSQL users

    return apply(url, directory, table)


def migrate(settings: Settings) -> list[str]:
    """Apply the pending migrations of the database the settings name: the PostgreSQL one
    of `settings.database_url`, else the SQLite file."""
    url = settings.database_url
    if url:
        directory = postgres_directory(settings.migrations_dir)
        return apply_postgres_migrations(url, directory, settings.migrations_table)
    return apply_migrations(
        settings.database_path, settings.migrations_dir, settings.migrations_table
    )
