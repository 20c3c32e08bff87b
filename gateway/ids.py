"""Identifiers and timestamps.

Ids are a short prefix plus a ULID (48-bit millisecond time + 80 random bits, Crockford
base32): text, unique, and sortable by creation time, which cursor pagination relies on.
Timestamps are ISO-8601 UTC text with milliseconds, so they also sort as text.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _RandomPool:
    """Bytes of `os.urandom` drawn 4 KiB at a time and handed out in slices, each byte once.

    `os.urandom` lets go of the GIL for its system call, and getting it back waits for
    whichever thread holds it (the database writer, for up to the switch interval): drawn
    per id, the send path spent about 430 µs of its event loop's time per request there
    (bench/RESULTS.md). The bytes are the same kernel randomness; a child process after a
    fork starts on a pool of its own, or parent and child would hand out the same ids."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._at = b"", 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._pool):
                self._pool, self._at = os.urandom(max(self.SIZE, n)), 0
            taken = self._pool[self._at : self._at + n]
            self._at += n
            return taken


_RANDOM = _RandomPool()


def random_hex(n: int) -> str:
    """`n` random bytes as hex (an unguessable token, from the kernel's randomness)."""
    return _RANDOM.take(n).hex()


def _ulid() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(_RANDOM.take(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    return f"{prefix}_{_ulid()}"


def instance_id() -> str:
    """Which process this is, among the instances sharing a database: host name and pid
    (recorded with the work it claims: a cron tick, a message's claim)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def iso(dt: datetime) -> str:
    d = dt if dt.tzinfo is UTC else dt.astimezone(UTC)
    # formatted by hand: strftime costs several times as much, and every write stamps times
    return (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}."
        f"{d.microsecond // 1000:03d}Z"
    )


def now_iso() -> str:
    return iso(datetime.now(UTC))


def later_iso(seconds: float) -> str:
    """The time `seconds` from now, as stored."""
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def parse_iso(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt
