"""What makes the store's SQL and values PostgreSQL's: placeholders, rows and types.

Store SQL is written for both engines with `?` (positional) and `:name` (named) placeholders;
psycopg wants `%s` and `%(name)s`, and a literal `%` doubled. `to_psycopg` translates once
per SQL string (cached), leaving string literals, quoted names, comments and `::` casts alone.

Rows answer `row["col"]` (and, as `sqlite3.Row` does, the same name in another case),
`row[0]`, `keys()`, iteration and `len()`: a tuple subclass made once per column list.

Values keep the shapes SQLite gives: a `bool` parameter is bound as the integer 0/1 (the
schema's booleans are integers), a boolean result (`x IN (…)` in a select list) comes back as
0/1, and a `numeric` result (PostgreSQL's `SUM` of integers) as an int, or a float when it
has a fraction, never a `Decimal`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap, Dumper, Loader
from psycopg.rows import RowMaker

_TOKENS = re.compile(
    r"""
      (?P<literal>'(?:[^']|'')*')         # 'text', with '' inside
    | (?P<quoted>"(?:[^"]|"")*")          # "identifier"
    | (?P<comment>--[^\n]*)               # -- to the end of the line
    | (?P<cast>::)                        # a cast, not a named placeholder
    | (?P<named>(?<![\w:]):[A-Za-z_]\w*)  # :name
    | (?P<positional>\?)                  # ?
    | (?P<percent>%)                      # a literal %
    """,
    re.VERBOSE,
)


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    text = match.group()
    if kind == "named":
        return f"%({text[1:]})s"
    if kind == "positional":
        return "%s"
    # psycopg reads % everywhere, literals and comments included
    return text.replace("%", "%%")


@functools.lru_cache(maxsize=2048)
def to_psycopg(sql: str) -> str:
    """`sql` with psycopg's placeholders (`?` → `%s`, `:name` → `%(name)s`, `%` → `%%`)."""
    return _TOKENS.sub(_replace, sql)


class PgRow(tuple[Any, ...]):
    """One result row; each column list gets its own subclass holding the name → index map."""

    __slots__ = ()
    _index: dict[str, int] = {}
    _keys: list[str] = []

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            index = self._index.get(key)
            if index is None:
                index = self._index.get(key.lower())
                if index is None:
                    raise IndexError(f"no column named {key!r}")
            return tuple.__getitem__(self, index)
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._keys)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    index: dict[str, int] = {}
    for position, name in enumerate(names):
        index.setdefault(name, position)  # the first of two equal names wins, as on SQLite
        index.setdefault(name.lower(), position)
    return type("PgRow", (PgRow,), {"__slots__": (), "_index": index, "_keys": list(names)})


def row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    description = cursor.description
    if description is None:
        return PgRow
    cls = _row_class(tuple(column.name for column in description))

    def make(values: Sequence[Any]) -> PgRow:
        return tuple.__new__(cls, values)

    return make


class _BoolAsInt(Dumper):
    """A Python bool bound as the integer the schema stores (0/1)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _BoolLoader(Loader):
    def load(self, data: Any) -> int:
        return 1 if bytes(data) == b"t" else 0


class _NumericLoader(Loader):
    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if text.lstrip("-").isdigit():
            return int(text)
        return float(text)


def adapters() -> AdaptersMap:
    """psycopg's adapters with the value shapes above."""
    found = AdaptersMap(psycopg.adapters)
    found.register_dumper(bool, _BoolAsInt)
    found.register_loader("bool", _BoolLoader)
    found.register_loader("numeric", _NumericLoader)
    return found


ADAPTERS = adapters()
