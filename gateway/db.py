"""The SQLite engine: one writer thread fed by a queue (group commit), pooled read connections.

The shape follows datasette's `database.py`: every write is a function run on the single
write connection. The writer takes everything waiting in its queue and runs it in one
`BEGIN IMMEDIATE … COMMIT`, each function inside its own SAVEPOINT so one failing write
does not undo its neighbours. With `synchronous=FULL` a commit costs one fsync, so batching
turns N waiting writes into one fsync; no caller hears back before its write is durable.

Results go back to the caller's event loop with one `call_soon_threadsafe` per read and per
committed batch, straight into an asyncio future: a request makes several small reads and
a write, and the concurrent.futures hand-off (a Future with its Condition, `wrap_future`'s
callback chain) cost more CPU than the SQLite statements themselves (bench/RESULTS.md).

`Database` is the `gateway.store.engine.Engine` for SQLite; the connection a store function
is handed is sqlite3's own (`SQLiteConnection`, its rows `sqlite3.Row`), whose statements
raise the engine's errors instead of the driver's, so nothing above the data layer needs
to know sqlite3 exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from gateway.store.engine import (
    Connection,
    DatabaseError,
    Dialect,
    IntegrityError,
    Params,
    UniqueViolation,
)
from gateway.store.tenant_scope import ScopedConnection, TenantDB, TenantScopeError

__all__ = ["Database", "SQLiteConnection", "ScopedConnection", "TenantDB", "TenantScopeError"]

T = TypeVar("T")
Outcome = tuple["asyncio.Future[Any]", bool, Any]

log = logging.getLogger("gateway.db")
_BUSY_TIMEOUT_MS = 5000
_MAX_BATCH = 512
_STOP = object()
_UNIQUE = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY})
_execute = sqlite3.Connection.execute
_executemany = sqlite3.Connection.executemany


def engine_error(exc: sqlite3.Error) -> DatabaseError:
    """The engine's error for a driver error: a UNIQUE or PRIMARY KEY violation is a
    UniqueViolation, another constraint an IntegrityError, anything else a DatabaseError."""
    if isinstance(exc, sqlite3.IntegrityError):
        if getattr(exc, "sqlite_errorcode", None) in _UNIQUE:
            return UniqueViolation(str(exc))
        return IntegrityError(str(exc))
    return DatabaseError(str(exc))


def _as_engine_error(exc: BaseException) -> BaseException:
    """For a failure that escaped a database function: the engine's error, caused by the
    driver's (errors of the function's own making pass as they are)."""
    if not isinstance(exc, sqlite3.Error):
        return exc
    error = engine_error(exc)
    error.__cause__ = exc
    return error


class SQLiteConnection(sqlite3.Connection):
    """A `gateway.store.engine.Connection`: sqlite3's connection, whose statements raise the
    engine's errors (the driver's as `__cause__`); a failure while fetching rows becomes the
    engine's error when it leaves the function the engine ran. One `try` per statement,
    which costs nothing on the way through."""

    dialect: Final[Dialect] = "sqlite"

    def execute(self, sql: str, params: Any = (), /) -> sqlite3.Cursor:
        try:
            return _execute(self, sql, params)
        except sqlite3.Error as exc:
            raise engine_error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return _executemany(self, sql, rows)
        except sqlite3.Error as exc:
            raise engine_error(exc) from exc


def connect(path: Path | str, *, read_only: bool = False) -> SQLiteConnection:
    try:
        if read_only:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                factory=SQLiteConnection,
            )
        else:
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, factory=SQLiteConnection
            )
    except sqlite3.Error as exc:
        raise engine_error(exc) from exc
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not read_only:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        # what an update or delete frees is zeroed, so an erased contact's old row versions
        # do not stay readable in free space of the file (gateway.services.erasure)
        conn.execute("PRAGMA secure_delete = ON")
        # statement journals (a statement that fires a trigger, such as the rollups' on
        # channel_messages_log, gets one) in memory rather than in a temporary file: that
        # file cost an insert or a status update 30 to 70 µs (bench/RESULTS.md)
        conn.execute("PRAGMA temp_store = MEMORY")
    return conn


class _Job:
    """A function to run on a database thread, and the caller's future and loop."""

    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Callable[[SQLiteConnection], Any]) -> None:
        self.fn = fn
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()


def _settle(outcomes: list[Outcome]) -> None:
    """On the caller's loop: hand each result over, unless the caller gave up meanwhile."""
    for future, ok, value in outcomes:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _deliver(outcomes: list[tuple[_Job, bool, Any]]) -> None:
    """From a database thread: one wake-up per caller loop for the whole list."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for job, ok, value in outcomes:
        by_loop.setdefault(job.loop, []).append((job.future, ok, value))
    for loop, items in by_loop.items():
        if loop.is_closed():
            continue
        with contextlib.suppress(RuntimeError):  # the loop closed since the check
            loop.call_soon_threadsafe(_settle, items)


class Database:
    """The SQLite `Engine`."""

    dialect: Final[Dialect] = "sqlite"

    def __init__(self, path: Path | str, read_connections: int = 4) -> None:
        self.path = Path(path)
        self._read_connections = read_connections
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._read_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: list[threading.Thread] | None = None
        self._reader_conns: list[SQLiteConnection] = []
        self._lock = threading.Lock()
        self.commits = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="db-writer", daemon=True
        )
        self._writer.start()
        self._readers = [
            threading.Thread(target=self._read_loop, name=f"db-reader_{n}", daemon=True)
            for n in range(self._read_connections)
        ]
        for reader in self._readers:
            reader.start()

    def subscribe(self, channel: str, callback: Callable[[], None]) -> None:
        """Nothing to hear: one process writes this file, and its services wake each other
        directly."""

    async def close(self) -> None:
        """Stop the readers, then the writer, which checkpoints the WAL into the file as it
        closes: after a clean stop the file alone holds every write (a read-only connection
        closing last could not checkpoint, and the writes would stay in `-wal`)."""
        if self._readers is not None:
            readers, self._readers = self._readers, None
            for _ in readers:
                self._read_queue.put(_STOP)
            for reader in readers:
                await asyncio.to_thread(reader.join)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None

    # -- writes ---------------------------------------------------------------------------

    def _write_loop(self, conn: SQLiteConnection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_Job] = [first]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._run_batch(conn, batch)
                if stop:
                    return
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.close()

    def _run_batch(self, conn: SQLiteConnection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, bool, Any]] = []
        try:
            # a caller that gave up (cancelled) before its turn is skipped; a running job can
            # no longer be cancelled, so its result is always delivered
            batch[:] = [job for job in batch if not job.future.cancelled()]
            if not batch:
                return
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except BaseException as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, False, _as_engine_error(exc)))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, True, result))
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: nobody's write is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = _as_engine_error(exc)
            _deliver([(job, False, failure) for job in batch])
            return
        self.commits += 1
        _deliver(outcomes)

    async def write_fn(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` on the write connection; returns once its transaction committed."""
        if self._writer is None:
            raise RuntimeError("database is not started")
        job = _Job(fn)
        self._queue.put(job)
        result: T = await job.future
        return result

    async def execute_write(self, sql: str, params: Params = ()) -> int:
        def run(conn: Connection) -> int:
            return conn.execute(sql, params).rowcount

        return await self.write_fn(run)

    async def reclaim(self, tables: Sequence[str]) -> None:
        """Copy the WAL into the file and empty it (TRUNCATE): the page images an erasure
        overwrote leave the `-wal` file. On a connection of its own, outside any transaction;
        readers still on an older snapshot make it give up (logged), and the next checkpoint
        does it."""

        def checkpoint() -> None:
            conn = connect(self.path)
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                conn.close()
            if busy:
                log.warning("WAL checkpoint after an erasure was blocked by a reader")

        await asyncio.to_thread(checkpoint)

    # -- reads ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        conn: SQLiteConnection | None = None
        try:
            while True:
                job = self._read_queue.get()
                if job is _STOP:
                    return
                if job.future.cancelled():  # the caller gave up before its turn
                    continue
                try:
                    if conn is None:
                        conn = self._connect_reader()
                    result = job.fn(conn)
                except BaseException as exc:
                    _deliver([(job, False, _as_engine_error(exc))])
                else:
                    _deliver([(job, True, result)])
        finally:
            if conn is not None:
                with self._lock:
                    self._reader_conns.remove(conn)
                conn.close()

    def _connect_reader(self) -> SQLiteConnection:
        conn = connect(self.path, read_only=True)
        conn.execute("PRAGMA query_only = ON")
        with self._lock:
            self._reader_conns.append(conn)
        return conn

    async def read_fn(self, fn: Callable[[Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("database is not started")
        job = _Job(fn)
        self._read_queue.put(job)
        result: T = await job.future
        return result

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self.read_fn(lambda conn: conn.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows: sqlite3.Row | None = await self.read_fn(
            lambda conn: conn.execute(sql, params).fetchone()
        )
        return rows
