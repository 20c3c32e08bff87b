"""Booking with several writers: PostgreSQL with many write connections, and two instances
(two pools) on one database, never book a place twice, whichever path takes it (a new
booking, a reschedule) and however often the same booking is retried at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config import Settings
from gateway.errors import Conflict
from gateway.services.booking import BookingService
from gateway.services.slots import BookingResult
from gateway.store import appointments as appointments_store
from gateway.store.engine import Row
from gateway.store.postgres import PostgresEngine
from gateway.store.tenant_scope import ScopedConnection
from gateway.store.tenants import Tenant
from tests.conftest import Api, running_api

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # a Friday
TEN = datetime(2026, 12, 1, 10, 0, tzinfo=PARIS)
PHONE = "+33612345678"


def phone(n: int) -> str:
    return f"+336{n:08d}"


@pytest.fixture
def pg_settings(make_settings: Callable[..., Settings], postgres_url: str) -> Settings:
    """A gateway on PostgreSQL, whatever GATEWAY_TEST_ENGINE says."""
    return make_settings(DATABASE_URL=postgres_url)


@pytest.fixture
async def pg_api(pg_settings: Settings) -> AsyncIterator[Api]:
    async with running_api(pg_settings) as api:
        yield api


@contextlib.asynccontextmanager
async def writers(url: str, n: int) -> AsyncIterator[PostgresEngine]:
    """An engine with `n` write connections: `n` write transactions at once."""
    engine = PostgresEngine(url, write_connections=n, read_connections=n)
    engine.start()
    # the pool opens its connections as writes wait for them: open them all before the race
    await asyncio.gather(
        *(engine.write_fn(lambda conn: conn.execute("SELECT pg_sleep(0.05)")) for _ in range(n))
    )
    try:
        yield engine
    finally:
        await engine.close()


async def tenant_with(api: Api, booking: dict[str, Any], slug: str = "cabinet") -> Tenant:
    _, key = await api.create_tenant(slug)
    response = await api.client.put(
        "/api/channels/phone/config", json={"booking": booking}, headers=key
    )
    assert response.status_code == 200, response.text
    row = await api.gateway.db.fetchone("SELECT * FROM tenants WHERE slug = ?", (slug,))
    return Tenant.from_row(row)


def service_on(engine: PostgresEngine, api: Api) -> BookingService:
    service = BookingService(engine, api.gateway.channels)
    service.clock = lambda: NOW
    return service


async def booked_count(api: Api) -> int:
    row = await api.gateway.db.fetchone(
        "SELECT COUNT(*) AS n FROM rendez_vous WHERE status = 'booked'"
    )
    return int(row["n"])


def assert_one_slot_taken_by(results: list[BookingResult], capacity: int) -> None:
    statuses = [r.status for r in results]
    assert statuses.count("booked") == capacity, statuses
    assert statuses.count("slot_taken") == len(results) - capacity
    taken = [r for r in results if r.status == "slot_taken"]
    assert all(r.alternatives[0].isoformat() == "2026-12-01T10:30:00+01:00" for r in taken)


@pytest.mark.parametrize("capacity", [1, 2])
async def test_hundred_bookings_of_one_slot_on_eight_write_connections(
    pg_api: Api, postgres_url: str, capacity: int
) -> None:
    tenant = await tenant_with(pg_api, {"capacity": capacity})
    async with writers(postgres_url, 8) as engine:
        service = service_on(engine, pg_api)
        results = await asyncio.gather(
            *(service.book(tenant, name=f"C{n}", phone=phone(n), start=TEN) for n in range(100))
        )
    assert_one_slot_taken_by(results, capacity)
    assert await booked_count(pg_api) == capacity


async def test_hundred_bookings_of_one_slot_spread_over_two_instances(
    pg_api: Api, postgres_url: str
) -> None:
    tenant = await tenant_with(pg_api, {"capacity": 1})
    async with writers(postgres_url, 4) as first, writers(postgres_url, 4) as second:
        services = (service_on(first, pg_api), service_on(second, pg_api))
        results = await asyncio.gather(
            *(
                services[n % 2].book(tenant, name=f"C{n}", phone=phone(n), start=TEN)
                for n in range(100)
            )
        )
    assert_one_slot_taken_by(results, 1)
    assert await booked_count(pg_api) == 1


async def test_the_same_booking_retried_at_once_on_many_writers_is_booked_once(
    pg_api: Api, postgres_url: str
) -> None:
    # capacity 3: the place is there for each retry, only the same-booking key refuses
    tenant = await tenant_with(pg_api, {"capacity": 3})
    async with writers(postgres_url, 8) as first, writers(postgres_url, 8) as second:
        services = (service_on(first, pg_api), service_on(second, pg_api))
        results = await asyncio.gather(
            *(services[n % 2].book(tenant, name="C", phone=PHONE, start=TEN) for n in range(40))
        )
    statuses = [r.status for r in results]
    assert statuses.count("booked") == 1, statuses
    assert statuses.count("already_booked") == 39
    assert len({(r.appointment or {}).get("id") for r in results}) == 1
    assert await booked_count(pg_api) == 1


def afternoon_slots(count: int) -> list[datetime]:
    """`count` slot starts, 14:00 to 17:30 of each weekday from the 2nd of December on."""
    found: list[datetime] = []
    day = date(2026, 12, 2)
    while len(found) < count:
        if day.weekday() < 5:
            found += [
                datetime(day.year, day.month, day.day, 14 + n // 2, 30 * (n % 2), tzinfo=PARIS)
                for n in range(8)
            ]
        day += timedelta(days=1)
    return found[:count]


async def test_reschedules_of_many_appointments_into_one_slot_move_one(
    pg_api: Api, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await tenant_with(pg_api, {"capacity": 1})
    real_count = appointments_store.count_overlapping

    def slow_count(conn: ScopedConnection, *args: Any, **kwargs: Any) -> int:
        # a busy database: the place is counted a while before it is taken
        found = real_count(conn, *args, **kwargs)
        time.sleep(0.02)
        return found

    async with writers(postgres_url, 8) as engine:
        service = service_on(engine, pg_api)
        ids = []
        for n, start in enumerate(afternoon_slots(20)):
            booked = await service.book(tenant, name=f"C{n}", phone=phone(n), start=start)
            assert booked.appointment is not None, booked
            ids.append(booked.appointment["id"])
        monkeypatch.setattr(appointments_store, "count_overlapping", slow_count)
        results = await asyncio.gather(
            *(service.reschedule(tenant, appointment_id, TEN) for appointment_id in ids)
        )
        late = await service.book(tenant, name="N", phone=PHONE, start=TEN)
    statuses = [r.status for r in results]
    assert statuses.count("rescheduled") == 1, statuses
    assert statuses.count("slot_taken") == 19
    assert late.status == "slot_taken"
    row = await pg_api.gateway.db.fetchone(
        "SELECT COUNT(*) AS n FROM rendez_vous WHERE status = 'booked' AND starts_at = ?",
        ("2026-12-01T09:00:00.000Z",),
    )
    assert row["n"] == 1


async def test_two_closing_changes_at_once_let_one_win(pg_api: Api, postgres_url: str) -> None:
    """`completed` and `cancelled` sent together: one applies, the other is refused as a
    change a completed (or cancelled) appointment cannot make, never both reported done."""
    tenant = await tenant_with(pg_api, {"capacity": 20})
    async with writers(postgres_url, 8) as engine:
        service = service_on(engine, pg_api)
        ids = []
        for n in range(20):
            booked = await service.book(tenant, name=f"C{n}", phone=phone(n), start=TEN)
            assert booked.appointment is not None
            ids.append(booked.appointment["id"])
        outcomes = await asyncio.gather(
            *(
                service.update(tenant, appointment_id, status=status)
                for appointment_id in ids
                for status in ("completed", "cancelled")
            ),
            return_exceptions=True,
        )
        for n, appointment_id in enumerate(ids):
            completed, cancelled = outcomes[2 * n], outcomes[2 * n + 1]
            refused = [o for o in (completed, cancelled) if isinstance(o, Exception)]
            assert len(refused) == 1, (completed, cancelled)
            assert isinstance(refused[0], Conflict)
            assert refused[0].code == "invalid_status_change"
            winner = "cancelled" if refused[0] is completed else "completed"
            assert (await service.get(tenant, appointment_id))["status"] == winner


async def test_a_same_booking_committed_between_check_and_insert_answers_as_a_replay(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index on (tenant, phone, start) refuses the insert when the same booking
    committed after the check: the caller gets the booking made, as a replay would."""
    tenant = await tenant_with(api, {"capacity": 2})
    service: BookingService = api.gateway.booking
    service.clock = lambda: NOW
    first = await service.book(tenant, name="C", phone=PHONE, start=TEN)
    assert first.status == "booked" and first.appointment is not None

    real = appointments_store.same_booking
    missed: list[str] = []

    def misses_once(conn: ScopedConnection, phone: str, starts_at: str) -> Row | None:
        if not missed:  # as if the first booking had committed just after this look
            missed.append(starts_at)
            return None
        return real(conn, phone, starts_at)

    monkeypatch.setattr(appointments_store, "same_booking", misses_once)
    again = await service.book(tenant, name="C", phone=PHONE, start=TEN)
    assert missed
    assert again.status == "already_booked"
    assert again.appointment is not None and again.appointment["id"] == first.appointment["id"]
    assert await booked_count(api) == 1


async def test_losers_over_http_on_two_instances_get_slot_taken(pg_settings: Settings) -> None:
    async with running_api(pg_settings) as one, running_api(pg_settings) as two:
        _, key = await one.create_tenant("cabinet")
        for instance in (one, two):
            instance.gateway.booking.clock = lambda: NOW
        body = {"customer_name": "C", "starts_at": TEN.isoformat()}
        responses = await asyncio.gather(
            *(
                (one, two)[n % 2].client.post(
                    "/api/appointments", json={**body, "customer_phone": phone(n)}, headers=key
                )
                for n in range(40)
            )
        )
        same = await asyncio.gather(
            *(
                (one, two)[n % 2].client.post(
                    "/api/appointments",
                    json={
                        **body,
                        "customer_phone": PHONE,
                        "starts_at": "2026-12-01T11:00:00+01:00",
                    },
                    headers=key,
                )
                for n in range(10)
            )
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 39, [r.text for r in responses if r.status_code >= 500]
    for response in responses:
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] == "slot_taken"
            assert error["details"]["alternatives"][0] == "2026-12-01T10:30:00+01:00"
    assert sorted(r.status_code for r in same) == [200] * 9 + [201], [r.text for r in same]
    assert len({r.json()["id"] for r in same}) == 1
    assert [r.headers.get("Idempotent-Replayed") for r in same].count("true") == 9
