"""Crons once per tick across instances (issue 11 §3): two gateways on one database run a
scheduled minute once, and ticks that overlap send each reminder once. Each test runs on the
test engine and, when that is SQLite, on PostgreSQL as well."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ids import iso
from gateway.services.cron import Scheduler
from gateway.store import cron_runs
from gateway.store import reminders as reminder_store
from gateway.store.engine import Connection, Row
from tests import postgres
from tests.conftest import TWILIO, Api, running_api

Make = Callable[[], Settings]


@pytest.fixture(params=["test engine", "postgres"])
def shared(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Make:
    """Settings of gateways that share one database (each call: another instance)."""
    if request.param == "postgres":
        if postgres.test_engine() == "postgres":
            pytest.skip("the test engine is PostgreSQL already")
        url = request.getfixturevalue("postgres_url")
        return lambda: make_settings(**TWILIO, DATABASE_URL=url)
    return lambda: make_settings(**TWILIO)


@contextlib.asynccontextmanager
async def two_instances(make: Make) -> AsyncIterator[tuple[Api, Api]]:
    async with running_api(make()) as a, running_api(make()) as b:
        yield a, b


async def book(api: Api, count: int) -> tuple[list[str], datetime]:
    """A tenant with SMS on and `count` appointments on one day a few days ahead; their ids
    and the last one's start (its 24 h reminder is due with all the others')."""
    _, key = await api.create_tenant("cabinet")
    on = await api.client.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert on.status_code == 200, on.text
    start = (datetime.now(UTC) + timedelta(days=3)).date()
    found = await api.client.get(
        "/api/availability",
        params={"start": start.isoformat(), "end": (start + timedelta(days=6)).isoformat()},
        headers=key,
    )
    assert found.status_code == 200, found.text
    slots = next(day["slots"] for day in found.json()["days"] if len(day["slots"]) >= count)
    ids = []
    for n, slot in enumerate(slots[:count]):
        made = await api.client.post(
            "/api/appointments",
            headers=key,
            json={"customer_name": "Ana", "customer_phone": f"+3361234560{n}", "starts_at": slot},
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    return ids, datetime.fromisoformat(slots[count - 1]).astimezone(UTC)


async def reminders_accepted(api: Api) -> dict[str, int]:
    """How many reminder messages each appointment got."""
    rows = await api.gateway.db.fetchall(
        "SELECT appointment_id, COUNT(*) AS n FROM channel_messages_log "
        "WHERE message_type = 'appointment_reminder' GROUP BY appointment_id"
    )
    return {row["appointment_id"]: int(row["n"]) for row in rows}


async def recorded_runs(api: Api) -> list[Row]:
    rows: list[Row] = await api.gateway.db.read_fn(lambda conn: cron_runs.runs(conn, "tick"))
    return rows


def day_before(start: datetime) -> datetime:
    return start - timedelta(hours=23, minutes=30)


async def test_a_scheduled_minute_runs_on_one_instance(shared: Make) -> None:
    async with two_instances(shared) as (a, b):
        ids, last = await book(a, 1)
        ran: list[str] = []

        def scheduler(api: Api, name: str) -> Scheduler:
            async def tick() -> dict[str, int]:
                ran.append(name)
                return {"reminders": await api.gateway.reminders.tick(now=day_before(last))}

            return Scheduler(["* * * * *"], tick, api.gateway.db, instance=name)

        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        outcomes = await asyncio.gather(
            scheduler(a, "instance-a").run_at(minute), scheduler(b, "instance-b").run_at(minute)
        )
        assert sorted(outcomes) == [False, True]
        assert len(ran) == 1
        assert await reminders_accepted(a) == {ids[0]: 1}
        [run] = await recorded_runs(b)
    assert run["instance"] == ran[0] and run["scheduled_at"] == iso(minute)
    assert run["outcome"] == '{"reminders": 1}' and run["finished_at"] is not None


async def test_overlapping_ticks_send_each_reminder_once(shared: Make) -> None:
    async with two_instances(shared) as (a, b):
        ids, last = await book(a, 6)
        now = day_before(last)
        counts = await asyncio.gather(
            a.gateway.reminders.tick(now=now),
            b.gateway.reminders.tick(now=now),
            b.gateway.reminders.tick(now=now),
        )
        assert sum(counts) == 6
        assert await reminders_accepted(a) == dict.fromkeys(ids, 1)
        # and nothing is left to send
        assert await a.gateway.reminders.tick(now=now + timedelta(minutes=1)) == 0


async def test_a_reminder_claimed_by_a_tick_that_died_is_sent_once_after_the_lease(
    shared: Make,
) -> None:
    async with two_instances(shared) as (a, b):
        [appointment_id], last = await book(a, 1)
        now = day_before(last)
        window = (iso(now + timedelta(hours=1)), iso(now + timedelta(hours=24)), 86400)

        def claim(conn: Connection) -> list[Row]:
            return reminder_store.claim_reminders(
                conn, "24h", *window, iso(now), iso(now - timedelta(minutes=5)), 10
            )

        # a tick claims the reminder and dies before sending it
        assert [row["id"] for row in await a.gateway.db.write_fn(claim)] == [appointment_id]
        assert await b.gateway.reminders.tick(now=now + timedelta(minutes=1)) == 0
        assert await reminders_accepted(b) == {}
        assert await b.gateway.reminders.tick(now=now + timedelta(minutes=6)) == 1
        assert await a.gateway.reminders.tick(now=now + timedelta(minutes=12)) == 0
        assert await reminders_accepted(a) == {appointment_id: 1}


async def test_runs_are_recorded_and_old_ones_forgotten(settings: Settings) -> None:
    async with running_api(settings) as api:
        ticks: list[Any] = []

        async def tick() -> dict[str, int]:
            ticks.append(1)
            return {"reminders": 0}

        scheduler = Scheduler(["* * * * *"], tick, api.gateway.db, instance="here")
        long_ago = iso(datetime.now(UTC) - timedelta(days=4))
        await api.gateway.db.write_fn(
            lambda conn: cron_runs.claim(conn, "tick", long_ago, "gone", long_ago)
        )
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        assert await scheduler.run_at(minute) is True
        assert await scheduler.run_at(minute) is False  # that minute ran already
        assert await scheduler.run_at(minute + timedelta(minutes=1)) is True
        runs = await recorded_runs(api)
    assert len(ticks) == 2
    assert [(r["scheduled_at"], r["instance"]) for r in runs] == [
        (iso(minute), "here"),
        (iso(minute + timedelta(minutes=1)), "here"),
    ]


async def test_a_failed_tick_is_recorded_with_its_error(settings: Settings) -> None:
    async with running_api(settings) as api:

        async def tick() -> None:
            raise RuntimeError("provider down")

        scheduler = Scheduler(["* * * * *"], tick, api.gateway.db, instance="here")
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        with pytest.raises(RuntimeError):
            await scheduler.run_at(minute)
        [run] = await recorded_runs(api)
    assert run["outcome"] == "error: RuntimeError: provider down"
