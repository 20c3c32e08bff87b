"""Message figures over periods, read from the rollups (gateway/store/rollups.py) where they
cover the period and from the messages elsewhere, with the same answer either way.

A period [lo, hi) is cut into (`plan`):
- whole UTC days, read from the day rows, where every hour of the day is rolled up and
  none is marked dirty (`days=False` leaves them out: a series by local day needs hours);
- whole UTC hours, read from the hour rows: rolled up (before the tenant's
  `complete_before`) and not dirty;
- the rest, read live from the messages: the partial hours at both ends, the hours since
  `complete_before` (the current hour and the few minutes after an hour before the job has
  rolled it up), and the dirty hours.

A filter on a column the rollups are not split by (`agent`) reads the whole period live.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import accumulate
from typing import Any

import numpy as np

from gateway.ids import iso, parse_iso
from gateway.store import rollups as store
from gateway.store.engine import Row
from gateway.store.tenant_scope import ScopedConnection, TenantDB

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def floor_day(moment: datetime) -> datetime:
    return floor_hour(moment).replace(hour=0)


def hour_key(moment: datetime) -> str:
    return iso(moment)[:13]


def day_key(moment: datetime) -> str:
    return iso(moment)[:10]


def hour_of(key: str) -> datetime:
    return datetime.fromisoformat(key + ":00:00+00:00")


@dataclass
class Plan:
    """A period cut into day-key ranges, hour-key ranges and ISO ranges read live."""

    days: list[tuple[str, str]] = field(default_factory=list)
    hours: list[tuple[str, str]] = field(default_factory=list)
    live: list[tuple[str, str]] = field(default_factory=list)


def plan(
    lo: datetime,
    hi: datetime,
    complete_before: datetime | None,
    dirty: Sequence[str] = (),
    *,
    days: bool = True,
) -> Plan:
    """How to read [lo, hi): see the module's docstring. `dirty` are hour keys, sorted."""
    cut = Plan()
    start = ceil_hour(lo)
    end = floor_hour(hi) if complete_before is None else min(floor_hour(hi), complete_before)
    if complete_before is None or start >= end:
        cut.live.append((iso(lo), iso(hi)))
        return cut
    live: list[tuple[datetime, datetime]] = []
    if lo < start:
        live.append((lo, start))
    dirty_hours = [hour_of(key) for key in dirty]

    def hours(low: datetime, high: datetime) -> None:
        at = low
        for hour in dirty_hours:
            if low <= hour < high:
                if at < hour:
                    cut.hours.append((hour_key(at), hour_key(hour)))
                live.append((hour, hour + HOUR))
                at = hour + HOUR
        if at < high:
            cut.hours.append((hour_key(at), hour_key(high)))

    first_day, last_day = floor_day(start), floor_day(end)
    if first_day < start:
        first_day += DAY
    if days and first_day < last_day:
        hours(start, first_day)
        dirty_days = {floor_day(hour) for hour in dirty_hours}
        day, run = first_day, None
        while day < last_day:
            if day in dirty_days:
                if run is not None:
                    cut.days.append((day_key(run), day_key(day)))
                    run = None
                hours(day, day + DAY)
            elif run is None:
                run = day
            day += DAY
        if run is not None:
            cut.days.append((day_key(run), day_key(last_day)))
        hours(last_day, end)
    else:
        hours(start, end)
    if end < hi:
        live.append((end, hi))
    cut.live = [(iso(low), iso(high)) for low, high in _merged(live)]
    return cut


def _merged(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for low, high in sorted(ranges):
        if merged and merged[-1][1] >= low:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


# -- folding --------------------------------------------------------------------------------


class Figures:
    """The fold of rows of some of `store.FIGURES`, money as exact decimals of the floats."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.values: dict[str, Any] = {name: None for name in names}
        self.recipients: set[int] = set()

    def add(self, row: Row | Mapping[str, Any]) -> None:
        for name in self.names:
            figure = store.BY_NAME[name]
            value = row[name]
            if figure.money and value is not None:
                value = Decimal(str(value))
            self.values[name] = store.fold(figure, self.values[name], value)

    def result(self) -> dict[str, Any]:
        folded = dict(self.values)
        for name, value in folded.items():
            if value is None and store.BY_NAME[name].fold == "sum":
                folded[name] = Decimal(0) if store.BY_NAME[name].money else 0
        return folded


_TABLES: tuple[tuple[str, store.Table], ...] = (
    ("days", "message_day_rollups"),
    ("hours", "message_hour_rollups"),
)


def _rolled_up(filters: Mapping[str, str | None]) -> bool:
    return all(value is None or column in store.DIMENSIONS for column, value in filters.items())


@dataclass
class _Reading:
    """The plans of several periods, their ranges numbered in one list per kind."""

    plans: list[Plan]

    def ranges(self, kind: str) -> tuple[list[tuple[str, str]], list[int]]:
        ranges: list[tuple[str, str]] = []
        owners: list[int] = []
        for n, cut in enumerate(self.plans):
            mine = getattr(cut, kind)
            ranges += mine
            owners += [n] * len(mine)
        return ranges, owners


def _coverage(
    conn: ScopedConnection,
    periods: Sequence[tuple[datetime, datetime]],
    filters: Mapping[str, str | None],
    *,
    days: bool,
) -> _Reading:
    if not _rolled_up(filters):
        return _Reading([plan(lo, hi, None) for lo, hi in periods])
    low = hour_key(floor_hour(min(lo for lo, _ in periods)))
    high = hour_key(ceil_hour(max(hi for _, hi in periods)) + HOUR)
    before, dirty = store.coverage(conn, low, high)
    complete = None if before is None else parse_iso(before)
    return _Reading([plan(lo, hi, complete, dirty, days=days) for lo, hi in periods])


class Recipients:
    """The distinct recipients of a period: packed hash sets of rollup rows and addresses
    read live, counted as the size of their union."""

    def __init__(self) -> None:
        self.packed: list[bytes] = []
        self.hashes: set[int] = set()

    def add_packed(self, blob: bytes) -> None:
        self.packed.append(blob)

    def add_address(self, address: str) -> None:
        self.hashes.add(store.recipient_hash(address))

    def count(self) -> int:
        """The union's size: the sets' hashes sorted together (each set is sorted, so the
        merge of runs), then counted where each differs from the one before it. In numpy:
        a Python set of a few hundred thousand 64-bit ints costs ten times as long."""
        data = b"".join([*self.packed, store.pack(self.hashes)])
        if not data:
            return 0
        hashes = np.sort(np.frombuffer(data, dtype="<i8"), kind="stable")
        return 1 + int(np.count_nonzero(hashes[1:] != hashes[:-1]))


@dataclass
class Reading:
    """A period's figures: all of it (`totals`), per value of the grouped columns (`groups`,
    empty without `group_by`), and its distinct recipients (None unless asked)."""

    totals: dict[str, Any]
    groups: dict[tuple[Any, ...], dict[str, Any]]
    unique_recipients: int | None


def read(
    conn: ScopedConnection,
    periods: Sequence[tuple[datetime, datetime]],
    names: Sequence[str],
    filters: Mapping[str, str | None],
    group_by: Sequence[str] = (),
    *,
    recipients: bool = False,
) -> list[Reading]:
    """The figures `names` of each period, in total and per value of the `group_by` columns
    (a subset of `store.DIMENSIONS`), and with `recipients` the distinct recipients: one
    look at the coverage, one pass over the rollup rows and the live rest."""
    reading = _coverage(conn, periods, filters, days=True)
    totals = [Figures(names) for _ in periods]
    groups: list[dict[tuple[Any, ...], Figures]] = [{} for _ in periods]
    sets = [Recipients() for _ in periods]

    def fold(rows: list[tuple[int, Row]], owners: list[int]) -> None:
        for arm, row in rows:
            n = owners[arm]
            totals[n].add(row)
            if group_by:
                key = tuple(row[column] for column in group_by)
                groups[n].setdefault(key, Figures(names)).add(row)

    for kind, table in _TABLES:
        ranges, owners = reading.ranges(kind)
        if ranges:
            fold(store.rolled_figures(conn, table, ranges, names, filters, group_by), owners)
            if recipients:
                for arm, blob in store.rolled_recipients(conn, table, ranges, filters):
                    sets[owners[arm]].add_packed(blob)
    ranges, owners = reading.ranges("live")
    if ranges:
        fold(store.live_figures(conn, ranges, names, filters, group_by), owners)
        if recipients:
            for arm, address in store.live_addresses(conn, ranges, filters):
                sets[owners[arm]].add_address(address)
    return [
        Reading(
            totals[n].result(),
            {key: figures.result() for key, figures in groups[n].items()},
            sets[n].count() if recipients else None,
        )
        for n in range(len(periods))
    ]


def read_figures(
    conn: ScopedConnection,
    periods: Sequence[tuple[datetime, datetime]],
    names: Sequence[str],
    filters: Mapping[str, str | None],
    *,
    recipients: bool = False,
) -> list[dict[str, Any]]:
    """The figures `names` of each period (and `unique_recipients` with `recipients`)."""
    answers = []
    for period in read(conn, periods, names, filters, recipients=recipients):
        answer = period.totals
        if recipients:
            answer["unique_recipients"] = period.unique_recipients
        answers.append(answer)
    return answers


def read_groups(
    conn: ScopedConnection,
    periods: Sequence[tuple[datetime, datetime]],
    names: Sequence[str],
    filters: Mapping[str, str | None],
    group_by: Sequence[str],
) -> list[dict[tuple[Any, ...], dict[str, Any]]]:
    """The figures `names` of each period per value of the `group_by` columns (a subset of
    `store.DIMENSIONS`)."""
    return [period.groups for period in read(conn, periods, names, filters, group_by)]


def read_counts(
    conn: ScopedConnection,
    intervals: Sequence[tuple[datetime, datetime]],
    filters: Mapping[str, str | None],
) -> list[dict[str, int]]:
    """total, delivered and failed of each interval (contiguous, ascending: the days of a
    period in the tenant's time zone), from the hour rows and the live rest."""
    names = ("total", "delivered", "failed")
    reading = _coverage(conn, intervals, filters, days=False)
    results = [Figures(names) for _ in intervals]
    ranges, owners = reading.ranges("hours")
    if ranges:
        # running sums over the rolled-up hours: a range's counts are two look-ups away
        rows = sorted(
            store.hour_counts(conn, ranges[0][0], ranges[-1][1], filters),
            key=lambda row: str(row["hour"]),
        )
        keys = [row["hour"] for row in rows]
        running = {name: [0, *accumulate(int(row[name]) for row in rows)] for name in names}
        for (low, high), owner in zip(ranges, owners, strict=True):
            first, end = bisect_left(keys, low), bisect_left(keys, high)
            if first < end:
                results[owner].add(
                    {name: running[name][end] - running[name][first] for name in names}
                )
    ranges, owners = reading.ranges("live")
    if ranges:
        for arm, row in store.live_figures(conn, ranges, names, filters):
            results[owners[arm]].add(row)
    return [figures.result() for figures in results]


async def readings(
    tdb: TenantDB,
    periods: Sequence[tuple[datetime, datetime]],
    names: Sequence[str],
    filters: Mapping[str, str | None],
    group_by: Sequence[str] = (),
    *,
    recipients: bool = False,
) -> list[Reading]:
    return await tdb.read_fn(
        lambda conn: read(conn, periods, names, filters, group_by, recipients=recipients)
    )


async def figures(
    tdb: TenantDB,
    periods: Sequence[tuple[datetime, datetime]],
    names: Sequence[str],
    filters: Mapping[str, str | None],
    *,
    recipients: bool = False,
) -> list[dict[str, Any]]:
    return await tdb.read_fn(
        lambda conn: read_figures(conn, periods, names, filters, recipients=recipients)
    )


async def groups(
    tdb: TenantDB,
    periods: Sequence[tuple[datetime, datetime]],
    names: Sequence[str],
    filters: Mapping[str, str | None],
    group_by: Sequence[str],
) -> list[dict[tuple[Any, ...], dict[str, Any]]]:
    return await tdb.read_fn(lambda conn: read_groups(conn, periods, names, filters, group_by))


async def counts(
    tdb: TenantDB,
    intervals: Sequence[tuple[datetime, datetime]],
    filters: Mapping[str, str | None],
) -> list[dict[str, int]]:
    return await tdb.read_fn(lambda conn: read_counts(conn, intervals, filters))
