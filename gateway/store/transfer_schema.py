"""The tables of a gateway database as `gateway.store.transfer` moves them: found in the
database itself (not from a list kept by hand), with their columns, the kind of value each
column holds, their primary key, and the tables they reference, in an order where every
table comes after the tables it references.

`d1_migrations` is not data: it is the schema version, compared instead of copied. Nor are
the analytics rollups (0013): they are computed from `channel_messages_log`, and the
importing gateway's rollup job computes them again from the rows it loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway.store.engine import Connection

MIGRATIONS_TABLE = "d1_migrations"
DERIVED = frozenset(
    ("message_hour_rollups", "message_day_rollups", "message_rollup_state", "message_rollup_dirty")
)
Kind = Literal["integer", "real", "text", "blob", "boolean", "other"]


class SchemaError(Exception):
    """The database's tables cannot be moved as they are (the message says why)."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    kinds: tuple[Kind, ...]
    key: tuple[str, ...]
    references: frozenset[str]
    # PostgreSQL: columns whose values come from a sequence (identity or serial), and
    # whether an identity is GENERATED ALWAYS (an INSERT must then override it)
    sequenced: tuple[str, ...] = ()
    always_identity: bool = False


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_kind(declared: str) -> Kind:
    """SQLite's affinity rules (https://sqlite.org/datatype3.html, 3.1)."""
    upper = declared.upper()
    if "INT" in upper:
        return "integer"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not upper or "BLOB" in upper:
        return "blob"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "other"  # NUMERIC affinity: stored as whatever the value is


_PG_KINDS: dict[str, Kind] = {
    "smallint": "integer",
    "integer": "integer",
    "bigint": "integer",
    "real": "real",
    "double precision": "real",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "bytea": "blob",
    "boolean": "boolean",
}


def applied_migrations(conn: Connection) -> list[str]:
    """The names recorded in `d1_migrations`, in the order they were applied ([] when the
    database has no such table)."""
    if MIGRATIONS_TABLE not in _table_names(conn, with_migrations=True):
        return []
    rows = conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY id").fetchall()
    return [str(row[0]) for row in rows]


def _table_names(conn: Connection, *, with_migrations: bool = False) -> list[str]:
    if conn.dialect == "sqlite":
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
            "ESCAPE '\\'"
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        ).fetchall()
    names = sorted(str(row[0]) for row in rows)
    return [n for n in names if n not in DERIVED and (with_migrations or n != MIGRATIONS_TABLE)]


def tables(conn: Connection) -> list[Table]:
    """Every data table, each after the tables it references (SchemaError for a table
    without a primary key, or references that go round in a circle)."""
    found = _sqlite_tables(conn) if conn.dialect == "sqlite" else _postgres_tables(conn)
    for table in found:
        if not table.key:
            raise SchemaError(f"table {table.name} has no primary key")
    return _by_references(found)


def _sqlite_tables(conn: Connection) -> list[Table]:
    found = []
    for name in _table_names(conn):
        info = conn.execute(f"PRAGMA table_info({quote(name)})").fetchall()
        columns = tuple(str(row["name"]) for row in info)
        kinds = tuple(_sqlite_kind(str(row["type"] or "")) for row in info)
        key = tuple(str(row["name"]) for row in sorted(info, key=lambda r: r["pk"]) if row["pk"])
        parents = conn.execute(f"PRAGMA foreign_key_list({quote(name)})").fetchall()
        references = frozenset(str(row["table"]) for row in parents) - {name}
        found.append(Table(name, columns, kinds, key, references))
    return found


def _postgres_tables(conn: Connection) -> list[Table]:
    names = _table_names(conn)
    columns: dict[str, list[tuple[str, Kind]]] = {name: [] for name in names}
    sequenced: dict[str, list[str]] = {name: [] for name in names}
    always: set[str] = set()
    for row in conn.execute(
        "SELECT table_name, column_name, data_type, is_identity, identity_generation, "
        "column_default FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall():
        table = str(row["table_name"])
        if table not in columns:
            continue
        column = str(row["column_name"])
        columns[table].append((column, _PG_KINDS.get(str(row["data_type"]), "other")))
        default = str(row["column_default"] or "")
        if row["is_identity"] == "YES" or default.startswith("nextval("):
            sequenced[table].append(column)
        if row["identity_generation"] == "ALWAYS":
            always.add(table)
    keys: dict[str, list[str]] = {name: [] for name in names}
    for row in conn.execute(
        "SELECT k.table_name, k.column_name FROM information_schema.table_constraints c "
        "JOIN information_schema.key_column_usage k ON k.constraint_schema = c.constraint_schema "
        "AND k.constraint_name = c.constraint_name AND k.table_name = c.table_name "
        "WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema() "
        "ORDER BY k.table_name, k.ordinal_position"
    ).fetchall():
        if str(row[0]) in keys:
            keys[str(row[0])].append(str(row[1]))
    references: dict[str, set[str]] = {name: set() for name in names}
    for row in conn.execute(
        "SELECT child.relname, parent.relname FROM pg_constraint c "
        "JOIN pg_class child ON child.oid = c.conrelid "
        "JOIN pg_class parent ON parent.oid = c.confrelid "
        "JOIN pg_namespace n ON n.oid = child.relnamespace "
        "WHERE c.contype = 'f' AND n.nspname = current_schema()"
    ).fetchall():
        if str(row[0]) in references and row[0] != row[1]:
            references[str(row[0])].add(str(row[1]))
    return [
        Table(
            name,
            tuple(c for c, _ in columns[name]),
            tuple(k for _, k in columns[name]),
            tuple(keys[name]),
            frozenset(references[name]),
            tuple(sequenced[name]),
            name in always,
        )
        for name in names
    ]


def _by_references(found: Iterable[Table]) -> list[Table]:
    """Parents first (Kahn's algorithm, ties by name, so both engines give one order).
    A reference to a table that is not there (another schema) does not hold a table back."""
    waiting = {table.name: table for table in found}
    placed: list[Table] = []
    while waiting:
        ready = sorted(
            name
            for name, table in waiting.items()
            if not any(parent in waiting for parent in table.references)
        )
        if not ready:
            raise SchemaError("tables reference each other in a circle: " + ", ".join(waiting))
        for name in ready:
            placed.append(waiting.pop(name))
    return placed
