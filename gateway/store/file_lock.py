"""One serving process per SQLite file.

SQLite's engine keeps its invariants in one process: one writer thread, the send rate limits
and crons in memory, and a start-up recovery that takes back every send left in flight, which
would be the running server's own sends were a second server started on the same file. So the
process that serves a SQLite database (the one that runs the dispatcher and the crons, i.e.
`gateway serve`) holds an exclusive `flock` on `<database>.lock` for as long as it serves;
another one refuses to start. One-off commands (`gateway cron`, `migrate`, `keyring`…) take
no lock and run beside a server, as SQLite's own locking lets them.

The kernel releases the lock when its holder's descriptor closes, and a process that dies,
SIGKILL included, closes them all: a crash never leaves a stale lock to clean up. The file
itself stays (it holds the last holder's pid, for the message): deleting it would let two
processes lock two different files of the same name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from gateway.store.engine import DatabaseError

LOCK_SUFFIX = ".lock"


class DatabaseInUse(DatabaseError):
    """Another process serves this SQLite database."""


def lock_path(database: Path) -> Path:
    """The lock file of a SQLite database: beside it, named after it."""
    resolved = database.resolve()
    return resolved.with_name(resolved.name + LOCK_SUFFIX)


class ServingLock:
    """The exclusive right to serve one SQLite database, held from `acquire` to `release`."""

    def __init__(self, database: Path) -> None:
        self.database = database.resolve()
        self.path = lock_path(database)
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock now, or raise DatabaseInUse naming the database and its holder."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "a": never truncate the file before holding it, the holder's pid is in there
        file = self.path.open("a+", encoding="ascii")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(file)
            file.close()
            raise DatabaseInUse(_in_use_message(self.database, holder)) from None
        except BaseException:
            file.close()
            raise
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            # closing the descriptor releases the lock; the file stays for the next holder
            file.close()


def _holder(file: IO[str]) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        file.seek(0)
        pid = file.read(32).strip()
        return pid if pid.isdigit() else None
    return None


def _in_use_message(database: Path, holder: str | None) -> str:
    who = f"another gateway process (pid {holder})" if holder else "another gateway process"
    return (
        f"the SQLite database {database} is already served by {who}. A SQLite database is "
        "served by one process at a time: stop that one first, or run several instances "
        "on PostgreSQL (DATABASE_URL=postgresql://…)."
    )
