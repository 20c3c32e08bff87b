"""SQLite access: one writer thread fed by a queue (group commit), pooled read connections.

The shape follows datasette's `database.py`: every write is a function run on the single
write connection. The writer takes everything waiting in its queue and runs it in one
`BEGIN IMMEDIATE … COMMIT`, each function inside its own SAVEPOINT so one failing write
does not undo its neighbours. With `synchronous=FULL` a commit costs one fsync, so batching
turns N waiting writes into one fsync; no caller hears back before its write is durable.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]

_BUSY_TIMEOUT_MS = 5000
_MAX_BATCH = 512
_STOP = object()


def connect(path: Path | str, *, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not read_only:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    return conn


class _WriteJob:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class Database:
    def __init__(self, path: Path | str, read_connections: int = 4) -> None:
        self.path = Path(path)
        self._read_connections = read_connections
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.commits = 0
        self.writes = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="db-writer", daemon=True
        )
        self._writer.start()
        self._readers = ThreadPoolExecutor(
            max_workers=self._read_connections, thread_name_prefix="db-reader"
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    # -- writes ---------------------------------------------------------------------------

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_WriteJob] = [first]
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
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_WriteJob]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            # a caller that gave up (cancelled) before its turn is skipped; a running job can
            # no longer be cancelled, so its result is always delivered
            batch[:] = [job for job in batch if job.future.set_running_or_notify_cancel()]
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
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, result))
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: nobody's write is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self.commits += 1
        self.writes += len(batch)
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    async def write_fn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the write connection; returns once its transaction committed."""
        if self._writer is None:
            raise RuntimeError("database is not started")
        job = _WriteJob(fn)
        self._queue.put(job)
        result: T = await asyncio.wrap_future(job.future)
        return result

    async def execute_write(self, sql: str, params: Params = ()) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, params).rowcount

        return await self.write_fn(run)

    # -- reads ----------------------------------------------------------------------------

    def _read_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, read_only=True)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def read_fn(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise RuntimeError("database is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._read_conn()))

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return await self.read_fn(lambda conn: conn.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows: sqlite3.Row | None = await self.read_fn(
            lambda conn: conn.execute(sql, params).fetchone()
        )
        return rows

    async def scope(self, tenant_id: str) -> TenantDB:
        return TenantDB(self, tenant_id)


class TenantScopeError(RuntimeError):
    """A tenant-scoped statement did not mention :tenant_id; it would leak across tenants."""


def _scoped(sql: str, params: Mapping[str, Any], tenant_id: str) -> dict[str, Any]:
    if ":tenant_id" not in sql:
        raise TenantScopeError(f"tenant-scoped SQL must use :tenant_id: {sql[:80]!r}")
    return {**params, "tenant_id": tenant_id}


class ScopedConnection:
    """A write connection that only runs statements scoped to one tenant."""

    def __init__(self, conn: sqlite3.Connection, tenant_id: str) -> None:
        self.raw = conn
        self.tenant_id = tenant_id

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> sqlite3.Cursor:
        return self.raw.execute(sql, _scoped(sql, params or {}, self.tenant_id))

    def executemany(self, sql: str, rows: Iterable[Mapping[str, Any]]) -> sqlite3.Cursor:
        return self.raw.executemany(sql, (_scoped(sql, r, self.tenant_id) for r in rows))


class TenantDB:
    """The database as one tenant sees it: every statement must bind `:tenant_id`, which is
    filled in here from the authenticated tenant, so a handler cannot forget or forge it."""

    def __init__(self, db: Database, tenant_id: str) -> None:
        self.db = db
        self.tenant_id = tenant_id

    async def fetchall(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[sqlite3.Row]:
        return await self.db.fetchall(sql, _scoped(sql, params or {}, self.tenant_id))

    async def fetchone(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> sqlite3.Row | None:
        return await self.db.fetchone(sql, _scoped(sql, params or {}, self.tenant_id))

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return await self.db.execute_write(sql, _scoped(sql, params or {}, self.tenant_id))

    async def write_fn(self, fn: Callable[[ScopedConnection], T]) -> T:
        return await self.db.write_fn(lambda conn: fn(ScopedConnection(conn, self.tenant_id)))
