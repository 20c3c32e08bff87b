"""The storage engine interface: what services and store modules may know of a database.

Two engines implement it: SQLite (`gateway.db.Database`: the embedded default, one writer
thread with group commit and pooled readers) and PostgreSQL (`gateway.store.postgres`,
selected by `DATABASE_URL=postgresql://…`: several stateless instances on one database).

Store functions are plain synchronous functions of a `Connection`, run by the engine on one
of its threads (`write_fn` in a write transaction, `read_fn` on a read connection); they write
SQL with `?` (positional) or `:name` (named) placeholders, and the engine translates for its
driver. SQL that differs between engines is chosen on `conn.dialect` inside the store module
(or comes from `gateway.store.dialect`), never in services. Services never import a driver:
they see `Row`, `Connection`, `Engine` and the errors below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]
Dialect = Literal["sqlite", "postgres"]


class Row(Protocol):
    """One result row: by column name (`row["id"]`) or position (`row[0]`)."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...  # Row | None

    def fetchall(self) -> list[Any]: ...  # list[Row]


class Connection(Protocol):
    """What a store function is handed."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Params], /) -> Cursor: ...


class Engine(Protocol):
    """A started database: the app holds one for its whole life."""

    @property
    def dialect(self) -> Dialect: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write_fn(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn(conn)` in a write transaction; returns once it committed (durably)."""
        ...

    async def read_fn(self, fn: Callable[[Connection], T]) -> T: ...

    async def execute_write(self, sql: str, params: Params = ()) -> int: ...

    async def fetchall(self, sql: str, params: Params = ()) -> list[Any]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Any: ...

    async def reclaim(self, tables: Sequence[str]) -> None:
        """After an erasure committed: make the row versions it overwrote unreachable below
        SQL too, as far as the engine can. SQLite (secure_delete: freed space is zeroed):
        the WAL copied into the file and emptied; PostgreSQL: VACUUM of `tables`."""
        ...

    def subscribe(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` (from another thread) whenever a transaction that `announce`d on
        `channel` commits, in any process on this database, and once after each (re)connect:
        what was announced while nobody listened is due as well. Stopped by `close()`.
        SQLite: nothing to hear, one process writes (its services wake each other)."""
        ...


# the channel on which a write announces messages due at once (the dispatchers listen)
DUE_MESSAGES = "gateway_due_messages"


class _Announcer(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, params: Mapping[str, Any], /) -> Cursor: ...


def announce(conn: _Announcer, channel: str, tenant_id: str = "") -> None:
    """Inside a write function (a tenant-scoped connection too): tell the listeners of
    `channel` when this transaction commits. PostgreSQL: `pg_notify`, delivered at commit,
    never for a rollback; SQLite: nothing (one process)."""
    if conn.dialect == "postgres":
        conn.execute(
            "SELECT pg_notify(:channel, :tenant_id)", {"channel": channel, "tenant_id": tenant_id}
        )


class DatabaseError(Exception):
    """A statement the engine could not run (the driver's error is the `__cause__`)."""


class IntegrityError(DatabaseError):
    """A constraint refused the write (unique, check, foreign key)."""


class UniqueViolation(IntegrityError):
    """A row with that key exists already."""
