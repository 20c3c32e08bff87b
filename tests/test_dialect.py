"""`gateway.store.dialect`: each engine's spelling answers what the SQLite spelling the store
used before answered (the `sqlite` cases prove SQLite's answers did not change; the
`postgres` ones run on a throwaway PostgreSQL, skipped where none can start)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from gateway.store import dialect
from gateway.store.engine import Dialect

Query = Callable[[str, Sequence[Any]], Any]
ORDER = "ORDER BY COALESCE(n, 99)"  # NULL last on both engines

ROWS = [
    # a, b, settings, n, x
    ("2025-01-01T10:00:00.000Z", "2025-01-01T11:00:00.000Z", '{"sender": "+33612"}', 1, 0.1),
    ("2025-01-01T10:00:00.000Z", "2025-01-01T10:01:30.500Z", '{"other": 5}', 2, 0.2),
    (None, None, "{}", None, None),
]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[Dialect, str, Query]]:
    """(dialect, placeholder, query): `query(sql, params)` → the first column of each row."""
    if request.param == "sqlite":
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (a TEXT, b TEXT, settings TEXT, n INTEGER, x REAL)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", ROWS)

        def query(sql: str, params: Sequence[Any]) -> Any:
            return [row[0] for row in conn.execute(sql, params).fetchall()]

        yield "sqlite", "?", query
        conn.close()
        return
    psycopg = pytest.importorskip("psycopg")
    url = request.getfixturevalue("empty_postgres_url")
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("CREATE TABLE t (a TEXT, b TEXT, settings TEXT, n BIGINT, x DOUBLE PRECISION)")
        with pg.cursor() as cursor:
            cursor.executemany("INSERT INTO t VALUES (%s, %s, %s, %s, %s)", ROWS)

        def pg_query(sql: str, params: Sequence[Any]) -> Any:
            return [row[0] for row in pg.execute(sql, params).fetchall()]

        yield "postgres", "%s", pg_query


def test_json_text_reads_a_top_level_key(engine: tuple[Dialect, str, Query]) -> None:
    name, _, query = engine
    expr = dialect.json_text(name, "settings", "sender")
    assert query(f"SELECT {expr} FROM t {ORDER}", ()) == ["+33612", None, None]
    assert query(f"SELECT n FROM t WHERE {expr} IS NOT NULL", ()) == [1]
    if name == "sqlite":
        before = "json_extract(settings, '$.sender')"
        assert query(f"SELECT {before} FROM t {ORDER}", ()) == ["+33612", None, None]


def test_json_text_takes_only_plain_keys() -> None:
    with pytest.raises(ValueError):
        dialect.json_text("sqlite", "settings", "x') OR 1=1 --")


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [("x", "x", True), ("x", "y", False), ("x", None, False), (None, None, True)],
)
def test_same_treats_null_as_a_value(
    engine: tuple[Dialect, str, Query], left: str | None, right: str | None, equal: bool
) -> None:
    name, mark, query = engine
    sql = f"SELECT n FROM t WHERE n = 1 AND {dialect.same(name, mark, mark)}"
    assert query(sql, (left, right)) == ([1] if equal else [])


def test_same_compares_columns(engine: tuple[Dialect, str, Query]) -> None:
    name, _, query = engine
    # a = a for every row, NULL included; a = b for none
    assert query(f"SELECT COUNT(*) FROM t WHERE {dialect.same(name, 'a', 'a')}", ()) == [3]
    assert query(f"SELECT COUNT(*) FROM t WHERE {dialect.same(name, 'a', 'b')}", ()) == [1]


def test_seconds_between_two_iso_instants(engine: tuple[Dialect, str, Query]) -> None:
    name, _, query = engine
    seconds = query(f"SELECT {dialect.seconds_between(name, 'a', 'b')} FROM t {ORDER}", ())
    assert seconds[:2] == [pytest.approx(3600.0, abs=1e-3), pytest.approx(90.5, abs=1e-3)]
    assert seconds[2] is None
    if name == "sqlite":
        before = "(julianday(b) - julianday(a)) * 86400.0"
        assert query(f"SELECT {before} FROM t {ORDER}", ()) == seconds


@pytest.mark.parametrize(("lead", "expected"), [(3599, [1]), (3600, []), (3601, [])])
def test_earlier_by_more_than(
    engine: tuple[Dialect, str, Query], lead: int, expected: list[int]
) -> None:
    name, mark, query = engine
    condition = dialect.earlier_by_more_than(name, "a", "b", mark)
    assert query(f"SELECT n FROM t WHERE n = 1 AND {condition}", (lead,)) == expected
    if name == "sqlite":  # the store's spelling before: the modifier bound as text
        before = "a < strftime('%Y-%m-%dT%H:%M:%fZ', b, ?)"
        assert query(f"SELECT n FROM t WHERE n = 1 AND {before}", (f"-{lead} seconds",)) == (
            expected
        )


@pytest.mark.parametrize(
    ("where", "expected"), [("", 3.0), ("WHERE n IS NULL", 0.0), ("WHERE n > 9", 0.0)]
)
def test_total_is_a_float_and_zero_over_nothing(
    engine: tuple[Dialect, str, Query], where: str, expected: float
) -> None:
    _, _, query = engine
    [value] = query(f"SELECT {dialect.total('n')} FROM t {where}", ())
    assert isinstance(value, float) and value == expected
    [money] = query(f"SELECT {dialect.total('x')} FROM t {where}", ())
    assert money == pytest.approx(0.3 if not where else 0.0)
    if engine[0] == "sqlite":
        assert query(f"SELECT TOTAL(n) FROM t {where}", ()) == [value]
        assert query(f"SELECT TOTAL(x) FROM t {where}", ()) == [money]


def test_count_where_counts_and_is_null_over_nothing(engine: tuple[Dialect, str, Query]) -> None:
    name, _, query = engine
    condition = "n IN (1, 2)"
    assert query(f"SELECT {dialect.count_where(condition)} FROM t", ()) == [2]
    assert query(f"SELECT {dialect.count_where(condition)} FROM t WHERE n > 9", ()) == [None]
    if name == "sqlite":
        assert query(f"SELECT SUM({condition}) FROM t", ()) == [2]
