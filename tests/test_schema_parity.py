"""The PostgreSQL migrations build the schema the SQLite (D1) migrations build: the same
tables, columns, primary keys, unique constraints, foreign keys and indexes.

Each schema is read from the database itself after its migrations ran (SQLite: `PRAGMA
table_info`, `index_list`, `index_info`, `foreign_key_list`; PostgreSQL: `information_schema`
and `pg_indexes`) into one neutral shape, and the two shapes must be equal.

Type mapping (SQLite's declared type → PostgreSQL's), normalised to one name each:

    TEXT      → text               "text"
    INTEGER   → bigint | integer   "integer"   (SQLite's integers are 64-bit; 0/1 booleans too)
    REAL      → double precision   "real"
    TIMESTAMP → timestamp          "timestamp" (d1_migrations.applied_at only)
    BLOB      → bytea              "blob"

Defaults are compared with PostgreSQL's casts (`'UTC'::text`) taken off; `CURRENT_TIMESTAMP`
on SQLite and `(now() AT TIME ZONE 'UTC')` on PostgreSQL are both "now". A partial index is
compared by its columns, uniqueness and what its WHERE clause mentions (columns, literals,
NULL tests): PostgreSQL rewrites `IN (…)` as `= ANY (ARRAY[…])`, so the text cannot match.

`INTEGER PRIMARY KEY AUTOINCREMENT` (d1_migrations.id) is an identity column on PostgreSQL;
both are "integer, primary key". SQLite's own `sqlite_sequence` table is not part of the
schema, nor is PostgreSQL's `json_valid` function (SQLite has it built in).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from gateway.migrations import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
TYPES = {
    "text": "text",
    "integer": "integer",
    "bigint": "integer",
    "smallint": "integer",
    "real": "real",
    "double precision": "real",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "blob": "blob",
    "bytea": "blob",
}
NOW = {"current_timestamp", "(now() at time zone 'utc')", "timezone('utc'::text, now())"}
_WORD = re.compile(r"'(?:[^']|'')*'|[A-Za-z_][A-Za-z_0-9]*")
_PREDICATE_NOISE = {"any", "array", "text", "in", "is", "not", "null", "and", "or"}
_PREDICATE_NOISE |= {"double", "precision"}  # PostgreSQL casts the 0 of `margin < 0`


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    default: str | None


@dataclass(frozen=True)
class Index:
    columns: tuple[str, ...]
    unique: bool
    partial: frozenset[str]  # what the WHERE clause mentions; empty: not partial
    null_test: str  # "", "is null" or "is not null"


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    table: str
    references: tuple[str, ...]
    on_delete: str


@dataclass
class Table:
    columns: list[Column]
    primary_key: tuple[str, ...]
    uniques: set[tuple[str, ...]]  # UNIQUE constraints (column lists)
    indexes: dict[str, Index]  # CREATE INDEX, by name
    foreign_keys: set[ForeignKey]


def _type(declared: str) -> str:
    name = declared.strip().lower()
    assert name in TYPES, f"add {declared!r} to the type mapping"
    return TYPES[name]


def _default(value: str | None) -> str | None:
    if value is None:
        return None
    text = re.sub(r"::[a-z ]+", "", value.strip()).lower()
    return "now" if text in NOW else text


def _predicate(where: str, columns: set[str]) -> tuple[frozenset[str], str]:
    words = {w if w.startswith("'") else w.lower() for w in _WORD.findall(where)}
    mentioned = frozenset(w for w in words if w.startswith("'") or w in columns)
    unknown = words - mentioned - _PREDICATE_NOISE
    assert not unknown, f"index predicate mentions {unknown}: extend the comparison"
    text = " ".join(where.lower().split())
    test = "is not null" if "is not null" in text else "is null" if "is null" in text else ""
    return mentioned, test


# -- SQLite ------------------------------------------------------------------------------------


def sqlite_schema(path: Path) -> dict[str, Table]:
    conn = sqlite3.connect(path)
    try:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        return {name: _sqlite_table(conn, name) for name in names}
    finally:
        conn.close()


def _sqlite_table(conn: sqlite3.Connection, name: str) -> Table:
    info = conn.execute(f"PRAGMA table_info({name})").fetchall()
    columns = [
        Column(r[1], _type(r[2]), bool(r[3]) or bool(r[5]), _default(r[4]))
        for r in info  # a primary key column is NOT NULL on PostgreSQL
    ]
    primary_key = tuple(r[1] for r in sorted(info, key=lambda r: r[5]) if r[5])
    column_names = {c.name for c in columns}
    uniques: set[tuple[str, ...]] = set()
    indexes: dict[str, Index] = {}
    sql_of = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (name,)
        )
    )
    for _, index, unique, origin, partial in conn.execute(f"PRAGMA index_list({name})"):
        cols = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({index})"))
        if origin == "pk":
            continue
        if origin == "u":
            uniques.add(cols)
            continue
        where = ""
        if partial:
            where = re.split(r"\bWHERE\b", sql_of[index], flags=re.IGNORECASE)[1]
        mentioned, test = _predicate(where, column_names) if where else (frozenset(), "")
        indexes[index] = Index(cols, bool(unique), mentioned, test)
    groups: dict[int, list[tuple[str, str, str, str]]] = {}
    for row in conn.execute(f"PRAGMA foreign_key_list({name})"):
        groups.setdefault(row[0], []).append((row[2], row[3], row[4], row[6]))
    foreign_keys = {
        ForeignKey(
            tuple(r[1] for r in rows), rows[0][0], tuple(r[2] for r in rows), rows[0][3].lower()
        )
        for rows in groups.values()
    }
    return Table(columns, primary_key, uniques, indexes, foreign_keys)


# -- PostgreSQL --------------------------------------------------------------------------------


def postgres_schema(url: str) -> dict[str, Table]:
    with psycopg.connect(url) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ]
        return {name: _postgres_table(conn, name) for name in names}


def _constraint_columns(
    conn: psycopg.Connection[tuple[object, ...]], table: str, kind: str
) -> dict[str, tuple[str, ...]]:
    rows = conn.execute(
        "SELECT tc.constraint_name, k.column_name FROM information_schema.table_constraints tc "
        "JOIN information_schema.key_column_usage k ON k.constraint_name = tc.constraint_name "
        "AND k.table_schema = tc.table_schema "
        "WHERE tc.table_schema = 'public' AND tc.table_name = %s AND tc.constraint_type = %s "
        "ORDER BY tc.constraint_name, k.ordinal_position",
        (table, kind),
    ).fetchall()
    found: dict[str, tuple[str, ...]] = {}
    for constraint, column in rows:
        found[str(constraint)] = (*found.get(str(constraint), ()), str(column))
    return found


def _postgres_table(conn: psycopg.Connection[tuple[object, ...]], name: str) -> Table:
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable, column_default, is_identity "
        "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
        "ORDER BY ordinal_position",
        (name,),
    ).fetchall()
    columns = [
        Column(
            str(r[0]),
            _type(str(r[1])),
            r[2] == "NO",
            None if r[4] == "YES" else _default(r[3] if r[3] is None else str(r[3])),
        )
        for r in rows
    ]
    column_names = {c.name for c in columns}
    primary = list(_constraint_columns(conn, name, "PRIMARY KEY").values())
    uniques = _constraint_columns(conn, name, "UNIQUE")
    indexes: dict[str, Index] = {}
    for index, definition in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s",
        (name,),
    ):
        index, definition = str(index), str(definition)
        if index in uniques or index == f"{name}_pkey":
            continue
        match = re.search(r"USING \w+ \((.*?)\)(?: WHERE (.*))?$", definition)
        assert match, definition
        cols = tuple(c.strip().strip('"') for c in match.group(1).split(","))
        where = match.group(2) or ""
        mentioned, test = _predicate(where, column_names) if where else (frozenset(), "")
        indexes[index] = Index(cols, definition.startswith("CREATE UNIQUE"), mentioned, test)
    foreign_keys = set()
    for constraint, cols, target, target_cols, on_delete in conn.execute(
        "SELECT c.conname, "
        "ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i), "
        "c.confrelid::regclass::text, "
        "ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i) "
        "JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i), "
        "c.confdeltype FROM pg_constraint c "
        "WHERE c.contype = 'f' AND c.conrelid = %s::regclass",
        (name,),
    ):
        del constraint
        action = {"c": "cascade", "a": "no action", "n": "set null", "r": "restrict"}
        foreign_keys.add(
            ForeignKey(tuple(cols), str(target), tuple(target_cols), action[str(on_delete)])
        )
    return Table(
        columns, primary[0] if primary else (), set(uniques.values()), indexes, foreign_keys
    )


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    path = tmp_path / "schema.sqlite3"
    apply_migrations(path, ROOT / "database" / "migrations")
    return path


def test_both_engines_have_the_same_schema(sqlite_path: Path, postgres_url: str) -> None:
    sqlite, postgres = sqlite_schema(sqlite_path), postgres_schema(postgres_url)
    assert sorted(postgres) == sorted(sqlite), "tables differ"
    for name, table in sqlite.items():
        other = postgres[name]
        assert other.columns == table.columns, f"{name}: columns differ"
        assert other.primary_key == table.primary_key, f"{name}: primary keys differ"
        assert other.uniques == table.uniques, f"{name}: unique constraints differ"
        assert other.foreign_keys == table.foreign_keys, f"{name}: foreign keys differ"
        assert other.indexes == table.indexes, f"{name}: indexes differ"


def test_the_comparison_sees_a_difference(sqlite_path: Path, postgres_url: str) -> None:
    """A schema drift of each kind is caught (the comparison is not vacuous)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP INDEX ix_messages_due")
        conn.execute("CREATE INDEX ix_messages_due ON channel_messages_log (next_attempt_at)")
        conn.execute("ALTER TABLE tickets ALTER COLUMN subject DROP NOT NULL")
    postgres = postgres_schema(postgres_url)
    sqlite = sqlite_schema(sqlite_path)
    assert postgres["channel_messages_log"].indexes != sqlite["channel_messages_log"].indexes
    assert postgres["tickets"].columns != sqlite["tickets"].columns
    assert postgres["tenants"] == sqlite["tenants"]
