"""`LISTEN` on a PostgreSQL channel, for `PostgresEngine.subscribe`: a thread of its own with
a dedicated autocommit connection (outside the pools), calling back for every notification.

The thread waits on the connection's socket and on a pipe of its own, so `stop()` returns at
once rather than after a polling timeout. A lost connection (server restart, the backend
terminated, a network cut caught by TCP keepalives or by the idle check) is reopened with
backoff; after each (re)connect the callback runs once, since what was announced while
nobody listened is due too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

log = logging.getLogger("gateway.db")

# how the listening sessions show in pg_stat_activity
APPLICATION_NAME = "gateway-listener"
_IDLE_CHECK_SECONDS = 30.0  # with nothing heard for this long, make sure the line is alive
_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0


class Listener:
    """One channel, one callback, one thread; `start()` then `stop()`."""

    def __init__(
        self, url: str, channel: str, callback: Callable[[], None], connect_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.channel = channel
        self.callback = callback
        self.connect_timeout = connect_timeout
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"pg-listen-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    delay = _BACKOFF_FIRST
                    self._hear(conn)
            except Exception as exc:  # psycopg's errors, or the pipe closed by a late stop()
                if self._stopping.is_set():
                    return
                log.warning(
                    "listener lost its connection; reconnecting",
                    extra={"channel": self.channel, "retry_in_seconds": delay, "error": str(exc)},
                )
            self._stopping.wait(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            application_name=APPLICATION_NAME,
            connect_timeout=max(1, int(self.connect_timeout)),
            # a dead peer is found out: the kernel probes an idle socket after 10 s, every 5 s
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
        )
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _hear(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Until stopped or the connection fails (raises psycopg.Error)."""
        self._call()  # anything announced before this LISTEN
        while not self._stopping.is_set():
            ready, _, _ = select.select([conn.fileno(), self._wake_r], [], [], _IDLE_CHECK_SECONDS)
            if self._wake_r in ready:
                return
            heard = bool(ready) and _drain(conn)
            if not heard:
                # idle for long, or readable with nothing to hear (a closed line reads as
                # readable): a round trip raises when the line is dead
                conn.execute("SELECT 1")
                heard = _drain(conn)  # what arrived during the round trip
            if heard:
                self._call()

    def _call(self) -> None:
        try:
            self.callback()
        except Exception:
            log.exception("listener callback failed", extra={"channel": self.channel})


def _drain(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Read the notifications that arrived, without waiting; True when there was one."""
    heard = False
    for _ in conn.notifies(timeout=0):
        heard = True
    return heard
