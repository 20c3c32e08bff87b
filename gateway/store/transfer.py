"""`gateway export FILE` and `gateway import FILE`: every table of one gateway database into
one file, and from that file into another database, SQLite or PostgreSQL either way.

The file is JSON lines, written and read one row at a time (memory stays flat whatever the
size of a table):

    {"format": "channel-gateway-export", "format_version": 1, "schema_version": "0005_….sql",
     "migrations": [...], "source": "sqlite", "exported_at": "…", "tables": [{"name", "columns"}]}
    {"table": "tenants", "columns": ["id", "slug", …]}
    ["ten_01…", "acme", …]                        one line a row, values in that column order
    {"end": "tenants", "rows": 12}
    …                                             every table after the tables it references
    {"end_of_export": true, "rows": 4711, "sha256": "<hex of every byte before this line>"}

Values are JSON's own (text, integers, floats, null); bytes are `{"$base64": "…"}`. What a
value becomes is decided on import by the target column: an integer column gets an integer
(SQLite's 0/1 booleans stay 0/1), a REAL / DOUBLE PRECISION column a float, a boolean column
a bool, TEXT the text exactly as it was (JSON documents are text in both schemas and are copied
byte for byte, encrypted credentials too: the importing gateway needs the same keyring).

The export reads one snapshot (one read transaction) in primary-key order, a page at a time.
The import is one write transaction: it checks that the file and the target are of this
gateway's schema version and that every target table is empty, loads the tables parents
first (foreign keys hold at every row, on both engines), moves PostgreSQL sequences past the
loaded ids, and commits only after the file's last line proved it complete (row counts and a
SHA-256 of everything before it). A file cut short, a row the target refuses or a wrong version
rolls everything back: the target is as it was.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.store.engine import Connection, DatabaseError, Engine
from gateway.store.transfer_schema import (
    Kind,
    SchemaError,
    Table,
    applied_migrations,
    quote,
    tables,
)

FORMAT = "channel-gateway-export"
FORMAT_VERSION = 1
_PAGE = 1000  # rows a statement reads on export
_BATCH = 500  # rows an executemany writes on import
_BYTES = "$base64"


class TransferError(Exception):
    """The export or import cannot go on (the message says why); nothing was written."""


@dataclass
class Summary:
    schema_version: str
    source: str
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


# -- versions -----------------------------------------------------------------------------------


def _last(names: Sequence[str]) -> str:
    return names[-1] if names else "none"


def check_version(found: Sequence[str], expected: Sequence[str], what: str, fix: str) -> None:
    """`what` (a database, the file) must have exactly this gateway's migrations."""
    if list(found) == list(expected):
        return
    extra = [name for name in found if name not in expected]
    detail = f" (migrations this gateway does not have: {', '.join(extra)})" if extra else ""
    raise TransferError(
        f"{what} is at schema version {_last(found)}{detail}, this gateway's migrations give "
        f"{_last(expected)}: {fix}"
    )


# -- export -------------------------------------------------------------------------------------


class _HashingWriter:
    """Lines out, and the SHA-256 of what was written."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()

    def line(self, value: Any) -> None:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_encode)
        encoded = data.encode() + b"\n"
        self.sha256.update(encoded)
        self._out.write(encoded)


def _encode(value: Any) -> Any:
    """JSON for the values a driver gives besides text, numbers and NULL."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {_BYTES: base64.b64encode(bytes(value)).decode()}
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"cannot export a value of type {type(value).__name__}")


def _snapshot(conn: Connection) -> None:
    if conn.dialect == "sqlite":
        conn.execute("BEGIN")
    else:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")


def _pages(conn: Connection, table: Table) -> Iterator[list[Any]]:
    """The rows of `table` in primary-key order, `_PAGE` at a time (keyset pagination: each
    page starts after the last key of the one before, whatever the engine's cursors keep)."""
    columns = ", ".join(quote(c) for c in table.columns)
    order = ", ".join(quote(c) for c in table.key)
    positions = [table.columns.index(c) for c in table.key]
    first = f"SELECT {columns} FROM {quote(table.name)} ORDER BY {order} LIMIT {_PAGE}"
    after = (
        f"SELECT {columns} FROM {quote(table.name)} "
        f"WHERE ({order}) > ({', '.join('?' for _ in table.key)}) ORDER BY {order} LIMIT {_PAGE}"
    )
    rows = conn.execute(first).fetchall()
    while rows:
        yield rows
        if len(rows) < _PAGE:
            return
        last = rows[-1]
        rows = conn.execute(after, [last[p] for p in positions]).fetchall()


def write_export(
    conn: Connection, out: IO[bytes], expected: Sequence[str], exported_at: str
) -> Summary:
    """Write the whole database to `out` (run on a read connection: one snapshot)."""
    _snapshot(conn)
    try:
        applied = applied_migrations(conn)
        check_version(
            applied,
            expected,
            "this database",
            "run `gateway migrate` on it first, or export it with the gateway that migrated it",
        )
        try:
            found = tables(conn)
        except SchemaError as exc:
            raise TransferError(str(exc)) from exc
        summary = Summary(_last(applied), conn.dialect)
        writer = _HashingWriter(out)
        writer.line(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "schema_version": summary.schema_version,
                "migrations": applied,
                "source": conn.dialect,
                "exported_at": exported_at,
                "tables": [{"name": t.name, "columns": list(t.columns)} for t in found],
            }
        )
        for table in found:
            writer.line({"table": table.name, "columns": list(table.columns)})
            count = 0
            for page in _pages(conn, table):
                for row in page:
                    writer.line(list(row))
                count += len(page)
            writer.line({"end": table.name, "rows": count})
            summary.rows[table.name] = count
        writer.line(
            {"end_of_export": True, "rows": summary.total, "sha256": writer.sha256.hexdigest()}
        )
        return summary
    finally:
        conn.execute("ROLLBACK")  # read only: nothing to keep


async def export_file(db: Engine, path: Path, expected: Sequence[str]) -> Summary:
    """Export the database to `path`, readable by its owner only (it holds key hashes,
    encrypted credentials and personal data). The file appears only once complete."""
    partial = path.with_name(path.name + ".partial")
    exported_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            summary = await db.read_fn(lambda conn: write_export(conn, out, expected, exported_at))
        partial.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return summary


# -- import -------------------------------------------------------------------------------------


def _decode(value: Any) -> Any:
    if type(value) is dict:
        if set(value) == {_BYTES}:
            return base64.b64decode(value[_BYTES])
        return json.dumps(value, ensure_ascii=False)
    if type(value) is list:
        return json.dumps(value, ensure_ascii=False)
    return value


def _to_integer(value: Any) -> Any:
    value = _decode(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _to_real(value: Any) -> Any:
    value = _decode(value)
    if type(value) is int:
        return float(value)
    return value


def _to_text(value: Any) -> Any:
    value = _decode(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise TransferError("bytes that are not UTF-8 text for a text column") from exc
    return value


def _to_boolean(value: Any) -> Any:
    value = _decode(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return bool(value)
    return value


_CONVERT: dict[Kind, Callable[[Any], Any]] = {
    "integer": _to_integer,
    "real": _to_real,
    "text": _to_text,
    "boolean": _to_boolean,
    "blob": _decode,
    "other": _decode,
}


class _Lines:
    """The file's lines as JSON values, numbered, with the SHA-256 of those read so far."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.number = 0
        self.sha256 = hashlib.sha256()
        self._pending: bytes | None = None

    def next(self) -> Any:
        """The next line's value; TransferError at the end of the file or on a line that is
        not whole JSON (a file cut short)."""
        raw = self._source.readline()
        self.number += 1
        if not raw:
            raise TransferError(
                f"the file ends at line {self.number - 1} before its last line: it is truncated"
            )
        if not raw.endswith(b"\n"):
            raise TransferError(f"line {self.number} is cut short: the file is truncated")
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise TransferError(f"line {self.number} is not JSON: the file is damaged") from exc
        if self._pending is not None:
            self.sha256.update(self._pending)
        self._pending = raw  # hashed once the next line shows it was not the last
        return value


def _check_header(header: Any, expected: Sequence[str]) -> dict[str, Any]:
    """The file's first line: our format, and this gateway's schema version."""
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TransferError("this is not a file written by `gateway export`")
    if header.get("format_version") != FORMAT_VERSION:
        raise TransferError(
            f"the file is in export format {header.get('format_version')!r}; this gateway "
            f"reads format {FORMAT_VERSION}"
        )
    check_version(
        header.get("migrations") or [],
        expected,
        "the file",
        "export and import with the same gateway version (migrate the source first)",
    )
    return header


def read_header(source: IO[bytes], expected: Sequence[str]) -> dict[str, Any]:
    """The file's first line, checked (see `_check_header`)."""
    try:
        header = json.loads(source.readline())
    except ValueError:
        header = None
    return _check_header(header, expected)


def _check_target(conn: Connection, header: dict[str, Any], expected: Sequence[str]) -> list[Table]:
    check_version(
        applied_migrations(conn),
        expected,
        "the target database",
        "run `gateway migrate` on it first, with the same settings",
    )
    try:
        found = {table.name: table for table in tables(conn)}
    except SchemaError as exc:
        raise TransferError(str(exc)) from exc
    listed = [(str(t["name"]), list(t["columns"])) for t in header.get("tables", [])]
    names = [name for name, _ in listed]
    if sorted(names) != sorted(found):
        raise TransferError(
            "the file's tables differ from the target's: "
            f"only in the file {sorted(set(names) - set(found))}, "
            f"only in the target {sorted(set(found) - set(names))}"
        )
    for position, (name, columns) in enumerate(listed):
        table = found[name]
        if sorted(columns) != sorted(table.columns):
            raise TransferError(f"table {name}: the file's columns differ from the target's")
        late = sorted(table.references - set(names[:position]))
        if late:
            raise TransferError(f"table {name} comes before {', '.join(late)}, which it references")
    busy = [
        name
        for name in names
        if conn.execute(f"SELECT 1 FROM {quote(name)} LIMIT 1").fetchone() is not None
    ]
    if busy:
        raise TransferError(
            "the target database is not empty (rows in " + ", ".join(busy) + "): import only "
            "into a freshly migrated database"
        )
    return [found[name] for name in names]


def _insert(conn: Connection, table: Table, columns: list[str], rows: list[list[Any]]) -> None:
    override = " OVERRIDING SYSTEM VALUE" if table.always_identity else ""
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}){override} "
        f"VALUES ({', '.join('?' for _ in columns)})"
    )
    try:
        conn.executemany(sql, rows)
    except DatabaseError as exc:
        raise TransferError(f"table {table.name}: the target refused a row: {exc}") from exc


def _load_table(conn: Connection, table: Table, lines: _Lines) -> int:
    opening = lines.next()
    if not isinstance(opening, dict) or opening.get("table") != table.name:
        raise TransferError(f"line {lines.number}: expected the rows of table {table.name}")
    columns = [str(c) for c in opening.get("columns", [])]
    if sorted(columns) != sorted(table.columns):
        raise TransferError(f"table {table.name}: the file's columns differ from the target's")
    kinds = dict(zip(table.columns, table.kinds, strict=True))
    convert = [_CONVERT[kinds[c]] for c in columns]
    width = len(columns)
    batch: list[list[Any]] = []
    count = 0
    while True:
        value = lines.next()
        if isinstance(value, list):
            if len(value) != width:
                raise TransferError(f"line {lines.number}: {len(value)} values for {width} columns")
            batch.append([fn(v) for fn, v in zip(convert, value, strict=True)])
            count += 1
            if len(batch) >= _BATCH:
                _insert(conn, table, columns, batch)
                batch = []
            continue
        if isinstance(value, dict) and value.get("end") == table.name:
            if value.get("rows") != count:
                raise TransferError(
                    f"table {table.name}: the file says {value.get('rows')} rows, it holds {count}"
                )
            if batch:
                _insert(conn, table, columns, batch)
            return count
        raise TransferError(f"line {lines.number}: unexpected in the rows of table {table.name}")


def _advance_sequences(conn: Connection, loaded: list[Table]) -> None:
    """PostgreSQL: the next generated id comes after the largest one loaded."""
    if conn.dialect != "postgres":
        return  # SQLite's AUTOINCREMENT keeps itself past explicit ids
    for table in loaded:
        for column in table.sequenced:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence(?, ?), MAX({quote(column)})) "
                f"FROM {quote(table.name)}",
                (quote(table.name), column),
            )


def read_import(conn: Connection, source: IO[bytes], expected: Sequence[str]) -> Summary:
    """Load the file into the empty target (run in one write transaction: any failure raises,
    and the caller's transaction rolls back whatever was loaded)."""
    lines = _Lines(source)
    header = _check_header(lines.next(), expected)
    loaded = _check_target(conn, header, expected)
    summary = Summary(str(header.get("schema_version")), str(header.get("source")))
    for table in loaded:
        summary.rows[table.name] = _load_table(conn, table, lines)
    trailer = lines.next()
    if not isinstance(trailer, dict) or trailer.get("end_of_export") is not True:
        raise TransferError(f"line {lines.number}: expected the end of the export")
    if trailer.get("rows") != summary.total or trailer.get("sha256") != lines.sha256.hexdigest():
        raise TransferError("the file's content does not match its last line: it is damaged")
    if source.read(1):
        raise TransferError(f"the file goes on after its last line ({lines.number})")
    _advance_sequences(conn, loaded)
    return summary


async def import_file(db: Engine, path: Path, expected: Sequence[str]) -> Summary:
    """Import `path` into the engine's (empty, migrated) database, all or nothing."""
    with path.open("rb") as source:
        read_header(source, expected)  # a wrong file is refused before a transaction opens
        source.seek(0)
        return await db.write_fn(lambda conn: read_import(conn, source, expected))
