"""SQL that has no spelling common to SQLite and PostgreSQL, one small function per idea.

Store modules write portable SQL where there is a portable form (`COALESCE`, `ON CONFLICT
… DO NOTHING`, ISO-8601 UTC text compared as text, dates computed in Python and bound) and
take the rest from here, keyed on `conn.dialect` (or `tdb.dialect`). Each function returns
an SQL fragment built from column names and placeholders of the caller's own code, never
from input.

No `::` casts in the PostgreSQL forms: the engine translates `:name` placeholders, so a
cast is spelled `CAST(x AS type)`.
"""

from __future__ import annotations

from gateway.store.engine import Dialect

# an ISO-8601 UTC instant with milliseconds, as `gateway.ids.iso` writes them
_SQLITE_ISO = "'%Y-%m-%dT%H:%M:%fZ'"


def json_text(dialect: Dialect, column: str, key: str) -> str:
    """The text value of the top-level `key` of the JSON object in the TEXT `column`
    (NULL when absent)."""
    if not key.isidentifier():
        raise ValueError(f"not a plain JSON key: {key!r}")
    if dialect == "sqlite":
        return f"json_extract({column}, '$.{key}')"
    return f"(CAST({column} AS jsonb) ->> '{key}')"


def same(dialect: Dialect, left: str, right: str) -> str:
    """`left` equals `right`, NULL equal to NULL (two columns, or a column and a
    placeholder)."""
    if dialect == "sqlite":
        return f"{left} IS {right}"
    return f"{left} IS NOT DISTINCT FROM {right}"


def seconds_between(dialect: Dialect, start: str, end: str) -> str:
    """Seconds from the ISO-8601 instant `start` to `end` (a float; NULL if either is)."""
    if dialect == "sqlite":
        return f"(julianday({end}) - julianday({start})) * 86400.0"
    return f"EXTRACT(EPOCH FROM CAST({end} AS timestamptz) - CAST({start} AS timestamptz))"


def milliseconds_between(dialect: Dialect, start: str, end: str) -> str:
    """Whole milliseconds from the ISO-8601 instant `start` to `end` (an integer, exact for
    instants stored to the millisecond; NULL if either is): sums of them are exact too."""
    if dialect == "sqlite":
        return f"CAST(ROUND((julianday({end}) - julianday({start})) * 86400000.0) AS INTEGER)"
    return (
        "CAST(ROUND(EXTRACT(EPOCH FROM CAST("
        f"{end} AS timestamptz) - CAST({start} AS timestamptz)) * 1000) AS BIGINT)"
    )


def earlier_by_more_than(dialect: Dialect, earlier: str, later: str, seconds: str) -> str:
    """The instant `earlier` lies more than `seconds` (a whole number: a placeholder) before
    `later`; both are ISO-8601 UTC text."""
    if dialect == "sqlite":
        return f"{earlier} < strftime({_SQLITE_ISO}, {later}, '-' || {seconds} || ' seconds')"
    return (
        f"CAST({earlier} AS timestamptz) < "
        f"CAST({later} AS timestamptz) - make_interval(secs => {seconds})"
    )


# -- portable spellings of SQLite-only functions -------------------------------------------


def total(expr: str) -> str:
    """SQLite's `TOTAL(expr)` in SQL both engines run: the sum as a float, 0.0 over no rows
    (`SUM` alone is NULL there, and an integer on integers)."""
    return f"CAST(COALESCE(SUM({expr}), 0) AS DOUBLE PRECISION)"


def count_where(condition: str) -> str:
    """How many rows meet `condition` (NULL over no rows, like SQLite's `SUM(condition)`;
    PostgreSQL does not add booleans)."""
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"
