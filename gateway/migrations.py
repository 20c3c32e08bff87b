"""Migrations in wrangler's D1 convention: `NNNN_name.sql` files applied in order, each
atomically, recorded in `d1_migrations(id, name, applied_at)` exactly as wrangler does."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gateway.db import connect

_NAME = re.compile(r"^\d{4}_[A-Za-z0-9_-]+\.sql$")


class MigrationError(Exception):
    def __init__(self, name: str, cause: str) -> None:
        super().__init__(f"migration {name} failed: {cause}")
        self.name = name


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path


def discover(directory: Path) -> list[Migration]:
    files = sorted(p for p in directory.glob("*.sql") if _NAME.match(p.name))
    return [Migration(p.name, p) for p in files]


def _ensure_table(conn: sqlite3.Connection, table: str) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE, "
        "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
    )


def applied(conn: sqlite3.Connection, table: str = "d1_migrations") -> list[str]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if not exists:
        return []
    return [row[0] for row in conn.execute(f"SELECT name FROM {table} ORDER BY id")]


def pending(conn: sqlite3.Connection, directory: Path, table: str = "d1_migrations") -> list[str]:
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
