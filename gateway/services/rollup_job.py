"""The rollup job: on every minute of its schedule (once across instances), it rolls up each
tenant's hours that ended more than `MARGIN` ago, a UTC day at a time, and computes again the
hours marked dirty since (gateway/store/rollups.py, database/migrations/0013).

Each step is one write transaction: the hour rows of one stretch of one tenant (or its dirty
hours), the day rows of the days that stretch completes, and the tenant's new
`complete_before`. A first run over a long history spreads over several minutes (at most
`max_steps` steps a run), as retention does; `catch_up` runs steps until nothing is left
(`gateway rollups`, and the benchmarks).

The margin leaves a write stamped just before an hour's end the time to commit before the
hour is rolled up; one that commits after it marks the hour dirty (the triggers compare with
the database's clock), so a slow transaction costs a recomputation, never a wrong figure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from gateway.ids import iso, now_iso, parse_iso
from gateway.services.rollups import DAY, HOUR, floor_day, floor_hour, hour_of
from gateway.store import rollups as store
from gateway.store.engine import Connection, Engine
from gateway.store.tenant_scope import ScopedConnection, TenantDB

log = logging.getLogger("gateway.rollups")

MARGIN = timedelta(minutes=5)
MAX_STEPS = 200
DIRTY_PER_RUN = 5000


class RollupJob:
    def __init__(self, db: Engine, *, max_steps: int = MAX_STEPS) -> None:
        self.db = db
        self.max_steps = max_steps

    async def run(self, now: datetime | None = None) -> dict[str, int]:
        """One run: the steps taken (write transactions), the hours recomputed because they
        were dirty, and the tenants left behind when the run's steps ran out."""
        closed = floor_hour((now or datetime.now(UTC)) - MARGIN)
        await self.db.write_fn(store.forget_marks_of_gone_tenants)
        recomputed, steps = await self._dirty(self.max_steps)
        idle: list[tuple[str, datetime | None]] = []
        behind = 0
        for tenant_id, before in (await self.db.read_fn(store.states)).items():
            start = None if before is None else parse_iso(before)
            if start is not None and start >= closed:
                continue
            if steps <= 0:
                behind += 1
                continue
            steps = await self._advance(TenantDB(self.db, tenant_id), start, closed, steps, idle)
        if idle:
            # tenants without messages since their complete_before: one transaction for all
            await self.db.write_fn(_advance_idle(idle, closed))
            steps -= 1
        return {"steps": self.max_steps - steps, "dirty_hours": recomputed, "behind": behind}

    async def catch_up(self, now: datetime | None = None) -> int:
        """Runs until every tenant is rolled up to the closed hours and nothing is dirty;
        the steps taken."""
        taken = 0
        while True:
            outcome = await self.run(now)
            taken += outcome["steps"]
            if outcome["steps"] == 0:
                return taken

    async def _dirty(self, steps: int) -> tuple[int, int]:
        marks = await self.db.read_fn(lambda conn: store.dirty_hours(conn, DIRTY_PER_RUN))
        by_tenant: dict[str, list[str]] = {}
        for tenant_id, hour in marks:
            by_tenant.setdefault(tenant_id, []).append(hour)
        recomputed = 0
        for tenant_id, hours in by_tenant.items():
            if steps <= 0:
                break
            await TenantDB(self.db, tenant_id).write_fn(_recompute(hours))
            recomputed += len(hours)
            steps -= 1
        return recomputed, steps

    async def _advance(
        self,
        tdb: TenantDB,
        start: datetime | None,
        closed: datetime,
        steps: int,
        idle: list[tuple[str, datetime | None]],
    ) -> int:
        first_step = True
        while steps > 0 and (start is None or start < closed):
            first = await tdb.read_fn(_first_message(start))
            if first is None or parse_iso(first) >= closed:
                if first_step:
                    idle.append((tdb.tenant_id, start))
                else:
                    await tdb.write_fn(_advance_to(start, closed, closed))
                    steps -= 1
                return steps
            begin = floor_hour(parse_iso(first))
            end = min(floor_day(begin) + DAY, closed)
            await tdb.write_fn(_advance_to(start, begin, end))
            steps -= 1
            start, first_step = end, False
        return steps


def _first_message(start: datetime | None) -> Callable[[ScopedConnection], str | None]:
    since = None if start is None else iso(start)
    return lambda conn: store.first_message_at(conn, since)


async def refresh_tenant(tdb: TenantDB) -> int:
    """Compute the tenant's dirty hours now (after an erasure, so that the erased contact's
    hash leaves the rollups at once rather than at the next run); the hours recomputed."""
    marks = await tdb.db.read_fn(lambda conn: store.dirty_hours(conn, DIRTY_PER_RUN))
    hours = [hour for tenant, hour in marks if tenant == tdb.tenant_id]
    if hours:
        await tdb.write_fn(_recompute(hours))
    return len(hours)


def _days_completed(old: datetime | None, begin: datetime, end: datetime) -> list[str]:
    """The UTC days that moving complete_before from `old` to `end` (the hours from `begin`
    computed) completes."""
    days = {floor_day(begin)}
    if old is not None:
        days.add(floor_day(old))
    return sorted(iso(day)[:10] for day in days if day + DAY <= end)


def _advance_to(
    old: datetime | None, begin: datetime, end: datetime
) -> Callable[[ScopedConnection], None]:
    def write(conn: ScopedConnection) -> None:
        if begin < end:
            store.compute_hours(conn, [(iso(begin), iso(end))])
        store.compute_days(conn, _days_completed(old, begin, end))
        store.set_complete_before(conn, iso(end), now_iso())

    return write


def _advance_idle(
    idle: list[tuple[str, datetime | None]], closed: datetime
) -> Callable[[Connection], None]:
    def write(conn: Connection) -> None:
        for tenant_id, start in idle:
            _advance_to(start, closed, closed)(ScopedConnection(conn, tenant_id))

    return write


def _recompute(hours: list[str]) -> Callable[[ScopedConnection], None]:
    """Recompute the dirty `hours` (keys, sorted) below the tenant's complete_before, and
    the days they are in; marks at or after it are left to the step that gets there."""

    def write(conn: ScopedConnection) -> None:
        before, _ = store.coverage(conn, "", "")
        if before is None:
            return
        complete = parse_iso(before)
        wanted = [hour_of(key) for key in hours if hour_of(key) < complete]
        ranges: list[tuple[datetime, datetime]] = []
        for hour in wanted:
            if ranges and ranges[-1][1] == hour:
                ranges[-1] = (ranges[-1][0], hour + HOUR)
            else:
                ranges.append((hour, hour + HOUR))
        if not ranges:
            return
        store.compute_hours(conn, [(iso(low), iso(high)) for low, high in ranges])
        days = sorted({floor_day(hour) for hour in wanted})
        store.compute_days(conn, [iso(day)[:10] for day in days if day + DAY <= complete])

    return write
