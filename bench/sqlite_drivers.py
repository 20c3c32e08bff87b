"""Per-query latency of three ways to reach one SQLite file from asyncio code: a plain `sqlite3`
call (no thread hop: the floor), aiosqlite (one thread per connection, each call a hop to it
and back), and the gateway's engine (`gateway.db.Database`: `read_fn` on pooled reader
threads, `write_fn` on the one writer thread with group commit).

Same file (a migrated gateway database, 1,000 tenants), same statements, same PRAGMAs (WAL,
synchronous=FULL, busy timeout): a primary-key read (`SELECT … FROM tenants WHERE id = ?`)
and a one-row write (`UPDATE tenants SET updated_at = ? WHERE id = ?`, committed). Each is
timed one at a time (the latency a request pays) and with 32 callers at once (what a server
under load sees; for writes, where group commit turns many fsyncs into one).

aiosqlite is a bench-only tool, installed into the virtualenv on first use.

    .venv/bin/python -m bench.sqlite_drivers [--reads 5000] [--writes 500] [--callers 32]
                                             [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from gateway.db import Database
from gateway.migrations import apply_migrations

READ = "SELECT id, slug, name, timezone, status FROM tenants WHERE id = ?"
WRITE = "UPDATE tenants SET updated_at = ? WHERE id = ?"
TENANTS = 1000
PRAGMAS = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
)


def aiosqlite_module() -> Any:
    try:
        return importlib.import_module("aiosqlite")
    except ModuleNotFoundError:
        common.log("installing aiosqlite (bench-only) into the virtualenv")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "aiosqlite"], check=True)
        return importlib.import_module("aiosqlite")


def prepare(path: Path) -> None:
    apply_migrations(path, common.ROOT / "database" / "migrations")
    with common.connect(path, read_only=False) as conn:
        conn.executemany(
            "INSERT INTO tenants (id, slug, name, timezone, created_at, updated_at) "
            "VALUES (?, ?, ?, 'Europe/Paris', '2026-01-01T00:00:00.000Z', "
            "'2026-01-01T00:00:00.000Z')",
            [(f"ten_{n:05d}", f"tenant-{n}", f"Tenant {n}") for n in range(TENANTS)],
        )


def tenant(n: int) -> str:
    return f"ten_{n % TENANTS:05d}"


@dataclass
class Figure:
    driver: str
    what: str
    callers: int
    ops: int
    seconds: float
    latencies: list[float]
    note: str = ""

    def row(self) -> list[object]:
        us = [v * 1e6 for v in self.latencies]
        return [
            self.driver,
            self.what + self.note,
            self.callers,
            common.fmt(self.seconds / self.ops * 1e6 * self.callers),
            common.fmt(common.percentile(us, 50)),
            common.fmt(common.percentile(us, 99)),
            f"{self.ops / self.seconds:,.0f}",
        ]


async def timed(
    driver: str,
    what: str,
    op: Callable[[int], Awaitable[object]],
    ops: int,
    callers: int,
    warmed: Callable[[], None] | None = None,
) -> Figure:
    """`ops` calls of `op`, spread over `callers` concurrent tasks; each call timed
    (`warmed` is called between the warm-ups and the timed calls)."""
    for n in range(min(200, ops)):  # warm caches and statement caches
        await op(n)
    if warmed is not None:
        warmed()
    latencies: list[float] = []
    per_caller = ops // callers

    async def caller(offset: int) -> None:
        for n in range(per_caller):
            began = time.perf_counter()
            await op(offset * per_caller + n)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    seconds = time.perf_counter() - began
    return Figure(driver, what, callers, per_caller * callers, seconds, latencies)


async def plain_sqlite3(path: Path, args: argparse.Namespace) -> list[Figure]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)

    async def read(n: int) -> object:
        return conn.execute(READ, (tenant(n),)).fetchone()

    async def write(n: int) -> object:
        return conn.execute(WRITE, (f"2026-02-01T00:00:{n % 60:02d}.000Z", tenant(n))).rowcount

    try:
        return [
            await timed("sqlite3 (in the event loop)", "read", read, args.reads, 1),
            await timed("sqlite3 (in the event loop)", "write", write, args.writes, 1),
        ]
    finally:
        conn.close()


async def with_aiosqlite(path: Path, args: argparse.Namespace) -> list[Figure]:
    aiosqlite = aiosqlite_module()
    conn = await aiosqlite.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        await conn.execute(pragma)

    async def read(n: int) -> object:
        async with conn.execute(READ, (tenant(n),)) as cursor:
            return await cursor.fetchone()

    async def read_all(n: int) -> object:
        return await conn.execute_fetchall(READ, (tenant(n),))

    async def write(n: int) -> object:
        cursor = await conn.execute(WRITE, (f"2026-02-01T00:00:{n % 60:02d}.000Z", tenant(n)))
        return cursor.rowcount

    name = "aiosqlite"
    try:
        return [
            await timed(name, "read (execute + fetchone)", read, args.reads, 1),
            await timed(name, "read (execute_fetchall)", read_all, args.reads, 1),
            await timed(name, "write", write, args.writes, 1),
            await timed(name, "read (execute_fetchall)", read_all, args.reads, args.callers),
            await timed(name, "write", write, args.writes, args.callers),
        ]
    finally:
        await conn.close()


async def gateway_engine(path: Path, args: argparse.Namespace) -> list[Figure]:
    db = Database(path, read_connections=4)
    db.start()

    async def read(n: int) -> object:
        key = tenant(n)
        return await db.read_fn(lambda conn: conn.execute(READ, (key,)).fetchone())

    async def write(n: int) -> object:
        values = (f"2026-02-01T00:00:{n % 60:02d}.000Z", tenant(n))
        return await db.write_fn(lambda conn: conn.execute(WRITE, values).rowcount)

    name = "gateway.db.Database"
    try:
        figures = [
            await timed(name, "read_fn", read, args.reads, 1),
            await timed(name, "write_fn", write, args.writes, 1),
            await timed(name, "read_fn", read, args.reads, args.callers),
        ]
        commits = [0]

        def warmed() -> None:
            commits[0] = db.commits

        figures.append(await timed(name, "write_fn", write, args.writes, args.callers, warmed))
        figures[-1].note = f" ({figures[-1].ops} in {db.commits - commits[0]} commits)"
        return figures
    finally:
        await db.close()


def lines_for(figures: Sequence[Figure], args: argparse.Namespace) -> list[str]:
    return [
        "One migrated gateway database (1,000 tenants) in a temporary directory, WAL, "
        "synchronous=FULL. Read: a primary-key SELECT of one tenant; write: a one-row UPDATE, "
        f"committed. {args.reads:,} reads and {args.writes:,} writes per line after 200 "
        f"warm-ups, the median of {args.rounds} rounds (drivers in turn); µs per op is wall "
        "time per operation seen by one caller (with several "
        "callers: total time * callers / ops).",
        "",
        *common.table(
            ["driver", "statement", "callers", "µs per op", "p50 µs", "p99 µs", "ops/s"],
            [figure.row() for figure in figures],
        ),
    ]


async def run(args: argparse.Namespace) -> list[Figure]:
    """Every driver once per round, in turn (so that a busy moment of the machine does not
    fall on one driver only); each line is the round with the median time."""
    rounds: dict[tuple[str, str, int], list[Figure]] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        path = Path(tmp) / "drivers.sqlite3"
        prepare(path)
        for number in range(args.rounds):
            common.log(f"round {number + 1} of {args.rounds}")
            for driver in (plain_sqlite3, with_aiosqlite, gateway_engine):
                for figure in await driver(path, args):
                    key = (figure.driver, figure.what, figure.callers)
                    rounds.setdefault(key, []).append(figure)
    return [sorted(f, key=lambda f: f.seconds)[len(f) // 2] for f in rounds.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    aiosqlite_module()  # installed before anything is timed
    figures = asyncio.run(run(args))
    title = "SQLite drivers: sqlite3, aiosqlite, the gateway's engine"
    if args.label:
        title += f" ({args.label})"
    lines = lines_for(figures, args)
    with contextlib.suppress(OSError), open("/proc/loadavg") as fh:
        lines += ["", f"- load average at the end: {' '.join(fh.read().split()[:3])}"]
    common.append_results(title, lines, record=not args.no_record)


if __name__ == "__main__":
    main()
