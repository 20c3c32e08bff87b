"""The PostgreSQL engine: `engine.Engine` on psycopg 3, for several stateless instances
sharing one database (selected by `DATABASE_URL=postgresql://…`).

Store functions stay plain synchronous functions of a `Connection`: the engine runs each on
a worker thread of its own with a connection from a `psycopg_pool.ConnectionPool`, one pool
for writes and one for reads (whose sessions are read-only, like SQLite's query-only readers).
Synchronous psycopg is the natural fit: the store functions are synchronous, and a round trip
on loopback costs ~70 µs either way.

`write_fn(fn)` is one transaction per call (READ COMMITTED), committed before it returns.
A failing statement inside it behaves as on SQLite: only that statement is undone, the
function may catch the error and go on. PostgreSQL instead aborts the whole transaction, so
when a statement fails and the function carries on (catches it), the engine rolls back and
runs the function once more with each statement in its own savepoint: the common path pays
nothing, the rare one pays two round trips a statement. (A function run twice must not count
on side effects outside the database; none of the store's do.)

Reads run in autocommit, one snapshot a statement, as SQLite's readers do.

Writes run on `write_connections` connections at once (WRITE_CONNECTIONS, default 4), and
several instances may share the database: the store's check-then-write steps are locked in
SQL for that — due messages are claimed `FOR UPDATE SKIP LOCKED` with a transaction-scoped
advisory lock per twin group (gateway/store/messages.py), a booking takes its tenant's
advisory lock before counting (gateway/store/appointments.py), rate-limit tokens and pacing
slots are single-statement upserts (gateway/store/rate_buckets.py), a cron tick is a claimed
row (gateway/store/cron_runs.py). The pools open all their connections at start, so
concurrent writes do not wait for connections being opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import psycopg
import psycopg.sql
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.store import engine
from gateway.store.engine import Params
from gateway.store.postgres_listener import Listener
from gateway.store.postgres_sql import ADAPTERS, PgRow, row_factory, to_psycopg

T = TypeVar("T")
Raw = psycopg.Connection[PgRow]


def translate_error(exc: psycopg.Error) -> engine.DatabaseError:
    """The engine's error for a driver error (raise it `from exc`)."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, pg_errors.UniqueViolation):
        return engine.UniqueViolation(message)
    if isinstance(exc, psycopg.IntegrityError):
        return engine.IntegrityError(message)
    return engine.DatabaseError(message)


class _Retry(BaseException):
    """A statement ran in a transaction that an earlier (caught) failure had aborted: the
    write starts again with savepoints. A BaseException so that no `except Exception` of a
    store function swallows it."""


class PostgresCursor:
    """The result of one statement: `rowcount`, `fetchone()`, `fetchall()`; a statement
    without a result set fetches nothing (None, []), as on SQLite."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: psycopg.Cursor[PgRow]) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> PgRow | None:
        if self._cursor.description is None:
            return None
        try:
            return self._cursor.fetchone()
        except psycopg.Error as exc:
            raise translate_error(exc) from exc

    def fetchall(self) -> list[PgRow]:
        if self._cursor.description is None:
            return []
        try:
            return self._cursor.fetchall()
        except psycopg.Error as exc:
            raise translate_error(exc) from exc

    def __iter__(self) -> Iterator[PgRow]:
        return iter(self.fetchall())


class PostgresConnection:
    """What a store function is handed: `execute` and `executemany` with the store's
    placeholders, driver errors as the engine's."""

    __slots__ = ("_failed", "_raw", "_savepoints")

    dialect: Literal["postgres"] = "postgres"

    def __init__(self, raw: Raw, *, savepoints: bool = False) -> None:
        self._raw = raw
        self._savepoints = savepoints
        self._failed = False

    @property
    def failed(self) -> bool:
        """Whether a statement failed in this transaction without a savepoint to undo it."""
        return self._failed

    def execute(self, sql: str, params: Params = (), /) -> PostgresCursor:
        return self._run(lambda cursor: cursor.execute(to_psycopg(sql), params))

    def executemany(self, sql: str, rows: Iterable[Params], /) -> PostgresCursor:
        return self._run(lambda cursor: cursor.executemany(to_psycopg(sql), rows))

    def _run(self, statement: Callable[[psycopg.Cursor[Any]], object]) -> PostgresCursor:
        """Run one statement (under its own savepoint when the transaction is being replayed
        with savepoints), translating the driver's errors."""
        cursor = self._raw.cursor()
        try:
            if self._savepoints:
                with self._raw.transaction():
                    statement(cursor)
            else:
                statement(cursor)
        except pg_errors.InFailedSqlTransaction:
            raise _Retry() from None
        except psycopg.Error as exc:
            self._failed = not self._savepoints
            raise translate_error(exc) from exc
        return PostgresCursor(cursor)


def _read_only(conn: Raw) -> None:
    conn.execute("SET default_transaction_read_only = on")


class PostgresEngine:
    """A started PostgreSQL database: pooled connections, work on the engine's threads."""

    dialect: Literal["postgres"] = "postgres"

    def __init__(
        self,
        url: str,
        *,
        write_connections: int = 4,
        read_connections: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._sizes = (max(1, write_connections), max(1, read_connections))
        self._connect_timeout = connect_timeout
        self._writes: ConnectionPool[Any] | None = None
        self._reads: ConnectionPool[Any] | None = None
        self._write_threads: ThreadPoolExecutor | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        self._listeners: list[Listener] = []

    def _pool(
        self, size: int, name: str, configure: Callable[[Raw], None] | None
    ) -> ConnectionPool[Any]:
        return ConnectionPool(
            self.url,
            kwargs={"autocommit": True, "row_factory": row_factory, "context": ADAPTERS},
            min_size=size,  # all at start: a burst of writes waits for no connect
            max_size=size,
            configure=configure,
            name=name,
            open=False,
            timeout=self._connect_timeout,
        )

    def start(self) -> None:
        writes, reads = self._sizes
        self._writes = self._pool(writes, "gateway-writes", None)
        self._reads = self._pool(reads, "gateway-reads", _read_only)
        try:
            for pool in (self._writes, self._reads):
                pool.open(wait=True, timeout=self._connect_timeout)
        except PoolTimeout as exc:
            self._close_pools()
            raise engine.DatabaseError(f"PostgreSQL did not answer: {exc}") from exc
        self._write_threads = ThreadPoolExecutor(writes, thread_name_prefix="pg-writer")
        self._read_threads = ThreadPoolExecutor(reads, thread_name_prefix="pg-reader")

    def _close_pools(self) -> None:
        for pool in (self._writes, self._reads):
            if pool is not None:
                pool.close()
        self._writes = self._reads = None

    def subscribe(self, channel: str, callback: Callable[[], None]) -> None:
        """`callback` on every notification on `channel` (`engine.announce`), from a
        listener thread with its own connection, reconnecting when it is lost."""
        listener = Listener(self.url, channel, callback, self._connect_timeout)
        self._listeners.append(listener)
        listener.start()

    async def close(self) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            await asyncio.to_thread(listener.stop)
        threads = [t for t in (self._write_threads, self._read_threads) if t is not None]
        self._write_threads = self._read_threads = None
        for executor in threads:
            await asyncio.to_thread(executor.shutdown, wait=True)
        await asyncio.to_thread(self._close_pools)

    # -- writes ---------------------------------------------------------------------------

    def _write(self, fn: Callable[[engine.Connection], T]) -> T:
        assert self._writes is not None
        with self._writes.connection() as raw:
            conn = PostgresConnection(raw)
            try:
                with raw.transaction():
                    result = fn(conn)
                    if not conn.failed:
                        return result
                    raise _Retry()  # a caught failure aborted the transaction: roll it back
            except _Retry:
                pass
            with raw.transaction():
                return fn(PostgresConnection(raw, savepoints=True))

    async def write_fn(self, fn: Callable[[engine.Connection], T]) -> T:
        """Run `fn(conn)` in one transaction; returns once it committed."""
        if self._write_threads is None:
            raise RuntimeError("database is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_threads, self._write, fn)

    async def execute_write(self, sql: str, params: Params = ()) -> int:
        return await self.write_fn(lambda conn: conn.execute(sql, params).rowcount)

    async def reclaim(self, tables: Sequence[str]) -> None:
        """VACUUM `tables` (it cannot run in a transaction: the pool's connections are in
        autocommit outside `write_fn`): the dead row versions an erasure left become free
        space no query reaches. Their bytes may stay in the data files until overwritten,
        and in the WAL until it is recycled."""

        def vacuum() -> None:
            assert self._writes is not None
            with self._writes.connection() as raw:
                for table in tables:
                    raw.execute(psycopg.sql.SQL("VACUUM {}").format(psycopg.sql.Identifier(table)))

        if self._write_threads is None:
            raise RuntimeError("database is not started")
        await asyncio.get_running_loop().run_in_executor(self._write_threads, vacuum)

    # -- reads ----------------------------------------------------------------------------

    def _read(self, fn: Callable[[engine.Connection], T]) -> T:
        assert self._reads is not None
        with self._reads.connection() as raw:
            return fn(PostgresConnection(raw))

    async def read_fn(self, fn: Callable[[engine.Connection], T]) -> T:
        if self._read_threads is None:
            raise RuntimeError("database is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_threads, self._read, fn)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        return await self.read_fn(lambda conn: conn.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> Any:
        return await self.read_fn(lambda conn: conn.execute(sql, params).fetchone())
