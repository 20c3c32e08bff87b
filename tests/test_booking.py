"""The booking engine through its service: slot grid, daylight-saving days, capacity under
concurrency, idempotency, the booking rules, cancel, reschedule and the voice sentences."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.services.booking import BookingInvalid, BookingService
from gateway.store.tenants import Tenant
from tests.conftest import Api

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # a Friday
TUESDAY = date(2026, 12, 1)
PHONE = "+33612345678"


def at(day: date, hhmm: str, tz: ZoneInfo = PARIS) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def phone(n: int) -> str:
    return f"+336{n:08d}"


async def setup(
    api: Api, booking: dict[str, Any] | None = None, now: datetime = NOW, slug: str = "cabinet"
) -> tuple[BookingService, Tenant]:
    _, key = await api.create_tenant(slug)
    if booking:
        response = await api.client.put(
            "/api/channels/phone/config", json={"booking": booking}, headers=key
        )
        assert response.status_code == 200, response.text
    service: BookingService = api.gateway.booking
    service.clock = lambda: now
    row = await api.gateway.db.fetchone("SELECT * FROM tenants WHERE slug = ?", (slug,))
    return service, Tenant.from_row(row)


def starts(slots: list[datetime]) -> list[str]:
    return [s.isoformat() for s in slots]


async def test_default_grid_of_a_winter_weekday(api: Api) -> None:
    service, tenant = await setup(api)
    found = await service.availability(tenant, TUESDAY)
    assert starts(found.slots) == [
        *(f"2026-12-01T{h}:00+01:00" for h in ("09:00", "09:30", "10:00", "10:30", "11:00")),
        "2026-12-01T11:30:00+01:00",
        *(f"2026-12-01T{h}:00+01:00" for h in ("14:00", "14:30", "15:00", "15:30", "16:00")),
        *(f"2026-12-01T{h}:00+01:00" for h in ("16:30", "17:00", "17:30")),
    ]
    assert found.sentence() == (
        "On Tuesday 1 December, 14 slots are free: "
        "09:00, 09:30, 10:00, 10:30, 11:00 and 9 more until 17:30."
    )


async def test_slot_length_buffer_and_short_list_sentence(api: Api) -> None:
    hours = {"tue": [{"open": "09:00", "close": "12:00"}]}
    booking = {"slot_minutes": 45, "buffer_minutes": 15, "opening_hours": hours}
    service, tenant = await setup(api, booking)
    found = await service.availability(tenant, TUESDAY)
    assert [s.strftime("%H:%M") for s in found.slots] == ["09:00", "10:00", "11:00"]
    assert found.sentence() == "On Tuesday 1 December: 09:00, 10:00 and 11:00 are free."


async def test_minimum_notice_hides_the_next_hour(api: Api) -> None:
    service, tenant = await setup(api, now=at(TUESDAY, "09:10"))
    found = await service.availability(tenant, TUESDAY)
    assert [s.strftime("%H:%M") for s in found.slots][:3] == ["10:30", "11:00", "11:30"]


async def test_spring_forward_day_has_no_slot_in_the_missing_hour(api: Api) -> None:
    hours = {"sun": [{"open": "01:00", "close": "05:00"}]}
    service, tenant = await setup(
        api, {"opening_hours": hours, "slot_minutes": 60}, now=datetime(2027, 3, 1, tzinfo=UTC)
    )
    found = await service.availability(tenant, date(2027, 3, 28))
    assert starts(found.slots) == [
        "2027-03-28T01:00:00+01:00",
        "2027-03-28T03:00:00+02:00",
        "2027-03-28T04:00:00+02:00",
    ]
    # the slot after the gap is booked at its real instant
    result = await service.book(
        tenant, name="Ana", phone=PHONE, start=at(date(2027, 3, 28), "03:00")
    )
    assert result.status == "booked" and result.appointment is not None
    assert result.appointment["starts_at"] == "2027-03-28T03:00:00+02:00"
    row = await api.gateway.db.fetchone("SELECT starts_at, ends_at FROM rendez_vous")
    assert (row["starts_at"], row["ends_at"]) == (
        "2027-03-28T01:00:00.000Z",
        "2027-03-28T02:00:00.000Z",
    )


async def test_spring_forward_with_half_hour_slots(api: Api) -> None:
    hours = {"sun": [{"open": "01:00", "close": "05:00"}]}
    service, tenant = await setup(
        api, {"opening_hours": hours}, now=datetime(2027, 3, 1, tzinfo=UTC)
    )
    found = await service.availability(tenant, date(2027, 3, 28))
    assert [s.strftime("%H:%M%z") for s in found.slots] == [
        "01:00+0100",
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
        "04:00+0200",
        "04:30+0200",
    ]


async def test_fall_back_day_offers_the_repeated_hour_twice(api: Api) -> None:
    hours = {"sun": [{"open": "01:00", "close": "05:00"}]}
    service, tenant = await setup(
        api, {"opening_hours": hours, "slot_minutes": 60}, now=datetime(2027, 10, 1, tzinfo=UTC)
    )
    found = await service.availability(tenant, date(2027, 10, 31))
    assert starts(found.slots) == [
        "2027-10-31T01:00:00+02:00",
        "2027-10-31T02:00:00+02:00",
        "2027-10-31T02:00:00+01:00",
        "2027-10-31T03:00:00+01:00",
        "2027-10-31T04:00:00+01:00",
    ]
    # booking the first 02:00 leaves the second one free
    first_two = datetime.fromisoformat("2027-10-31T02:00:00+02:00")
    result = await service.book(tenant, name="Ana", phone=PHONE, start=first_two)
    assert result.status == "booked"
    after = await service.availability(tenant, date(2027, 10, 31))
    assert "2027-10-31T02:00:00+01:00" in starts(after.slots)
    assert "2027-10-31T02:00:00+02:00" not in starts(after.slots)


async def test_summer_day_shows_summer_offset(api: Api) -> None:
    service, tenant = await setup(api, now=datetime(2027, 6, 1, tzinfo=UTC))
    found = await service.availability(tenant, date(2027, 6, 15))
    assert found.slots[0].isoformat() == "2027-06-15T09:00:00+02:00"


async def test_booking_timezone_overrides_the_tenants(api: Api) -> None:
    service, tenant = await setup(api, {"timezone": "America/New_York"})
    found = await service.availability(tenant, TUESDAY)
    assert found.timezone == "America/New_York"
    assert found.slots[0].isoformat() == "2026-12-01T09:00:00-05:00"


async def test_longer_duration_spans_consecutive_slots(api: Api) -> None:
    service, tenant = await setup(api)
    hour = await service.availability(tenant, TUESDAY, duration=60)
    morning = [s.strftime("%H:%M") for s in hour.slots if s.hour < 12]
    assert morning == ["09:00", "09:30", "10:00", "10:30", "11:00"]
    result = await service.book(
        tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "09:00"), duration=60
    )
    assert result.appointment is not None and result.appointment["duration_minutes"] == 60
    left = await service.availability(tenant, TUESDAY)
    assert [s.strftime("%H:%M") for s in left.slots][:2] == ["10:00", "10:30"]
    with pytest.raises(BookingInvalid) as error:
        await service.availability(tenant, TUESDAY, duration=45)
    assert error.value.reason == "bad_duration"


async def test_capacity_counts_overlapping_bookings(api: Api) -> None:
    service, tenant = await setup(api, {"capacity": 2})
    start = at(TUESDAY, "09:00")
    for n in range(2):
        assert (await service.book(tenant, name="C", phone=phone(n), start=start)).status == (
            "booked"
        )
    third = await service.book(tenant, name="C", phone=phone(3), start=start)
    assert third.status == "slot_taken"
    assert starts(list(third.alternatives)) == [
        "2026-12-01T09:30:00+01:00",
        "2026-12-01T10:00:00+01:00",
        "2026-12-01T10:30:00+01:00",
    ]


@pytest.mark.parametrize("capacity", [1, 2])
async def test_hundred_concurrent_bookings_never_overbook(api: Api, capacity: int) -> None:
    service, tenant = await setup(api, {"capacity": capacity})
    start = at(TUESDAY, "10:00")
    results = await asyncio.gather(
        *(service.book(tenant, name=f"C{n}", phone=phone(n), start=start) for n in range(100))
    )
    statuses = [r.status for r in results]
    assert statuses.count("booked") == capacity
    assert statuses.count("slot_taken") == 100 - capacity
    taken = [r for r in results if r.status == "slot_taken"]
    assert all(len(r.alternatives) == 3 for r in taken)
    assert all(r.alternatives[0].isoformat() == "2026-12-01T10:30:00+01:00" for r in taken)
    row = await api.gateway.db.fetchone(
        "SELECT COUNT(*) AS n FROM rendez_vous WHERE status = 'booked'"
    )
    assert row["n"] == capacity


async def test_same_phone_and_start_is_idempotent_and_notifies_once(api: Api) -> None:
    service, tenant = await setup(api)
    booked: list[tuple[str, dict[str, Any]]] = []

    async def on_booked(tenant_id: str, appointment: dict[str, Any], moved: bool) -> None:
        booked.append((tenant_id, appointment))

    service.on_booked = on_booked
    first = await service.book(
        tenant, name="Ana", phone="+33 6 12 34 56 78", start=at(TUESDAY, "09:00"), source="voice"
    )
    again = await service.book(tenant, name="Ana B.", phone=PHONE, start=at(TUESDAY, "09:00"))
    assert (first.status, again.status) == ("booked", "already_booked")
    assert first.appointment is not None and again.appointment is not None
    assert again.appointment["id"] == first.appointment["id"]
    assert again.appointment["customer_name"] == "Ana" and again.appointment["source"] == "voice"
    assert [(t, a["id"]) for t, a in booked] == [(tenant.id, first.appointment["id"])]
    # a retry arriving once the start is too close is still answered with the booking
    service.clock = lambda: at(TUESDAY, "08:30")
    late = await service.book(tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "09:00"))
    assert late.status == "already_booked"


async def test_a_failing_hook_does_not_undo_the_booking(api: Api) -> None:
    service, tenant = await setup(api)

    async def broken(tenant_id: str, appointment: dict[str, Any], moved: bool) -> None:
        raise RuntimeError("sms down")

    service.on_booked = broken
    result = await service.book(tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "09:00"))
    assert result.status == "booked"


@pytest.mark.parametrize(
    ("start", "reason", "words"),
    [
        (at(date(2026, 12, 5), "10:00"), "outside_opening_hours", "closed on Saturday"),
        (at(TUESDAY, "12:30"), "outside_opening_hours", "Tuesday: 09:00-12:00, 14:00-18:00"),
        (at(TUESDAY, "09:10"), "off_grid", "nearest: 09:00 or 09:30"),
        (at(date(2026, 11, 20), "09:30"), "too_soon", "60 minutes' notice"),
        (at(date(2026, 11, 19), "10:00"), "too_soon", "in the past"),
        (at(date(2027, 1, 20), "10:00"), "beyond_horizon", "until Tuesday 19 January"),
    ],
)
async def test_starts_outside_the_rules_are_refused(
    api: Api, start: datetime, reason: str, words: str
) -> None:
    service, tenant = await setup(api)
    with pytest.raises(BookingInvalid) as error:
        await service.book(tenant, name="Ana", phone=PHONE, start=start)
    assert error.value.reason == reason and words in error.value.detail
    assert error.value.details["fields"][0]["field"] == "starts_at"
    assert await api.gateway.db.fetchone("SELECT id FROM rendez_vous") is None


async def test_appointment_ending_after_closing_is_refused(api: Api) -> None:
    service, tenant = await setup(api)
    with pytest.raises(BookingInvalid) as error:
        await service.book(tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "11:30"), duration=60)
    assert error.value.detail == "would end after closing time (12:00)"


async def test_bad_phone_is_refused(api: Api) -> None:
    service, tenant = await setup(api)
    with pytest.raises(BookingInvalid) as error:
        await service.book(tenant, name="Ana", phone="0612", start=at(TUESDAY, "09:00"))
    assert error.value.details["fields"][0]["field"] == "customer_phone"


async def test_cancel_frees_the_slot_and_can_be_repeated(api: Api) -> None:
    service, tenant = await setup(api)
    result = await service.book(tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "09:00"))
    assert result.appointment is not None
    appointment_id = result.appointment["id"]
    cancelled = await service.cancel(tenant, appointment_id)
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"]
    assert (await service.cancel(tenant, appointment_id))["status"] == "cancelled"
    other = await service.book(tenant, name="Bob", phone=phone(2), start=at(TUESDAY, "09:00"))
    assert other.status == "booked"


async def test_reschedule_moves_atomically_and_ignores_its_own_place(api: Api) -> None:
    service, tenant = await setup(api)
    notified: list[str] = []

    async def on_booked(tenant_id: str, appointment: dict[str, Any], moved: bool) -> None:
        notified.append(appointment["starts_at"])

    service.on_booked = on_booked
    mine = await service.book(
        tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "09:00"), duration=60
    )
    other = await service.book(tenant, name="Bob", phone=phone(2), start=at(TUESDAY, "10:30"))
    assert mine.appointment is not None and other.appointment is not None
    # overlaps its own old time only: allowed with capacity 1
    moved = await service.reschedule(tenant, mine.appointment["id"], at(TUESDAY, "09:30"))
    assert moved.status == "rescheduled" and moved.appointment is not None
    assert moved.appointment["starts_at"] == "2026-12-01T09:30:00+01:00"
    assert moved.appointment["ends_at"] == "2026-12-01T10:30:00+01:00"
    # 10:00-11:00 would overlap Bob's 10:30
    taken = await service.reschedule(tenant, mine.appointment["id"], at(TUESDAY, "10:00"))
    assert taken.status == "slot_taken" and taken.alternatives
    assert notified == [
        "2026-12-01T09:00:00+01:00",
        "2026-12-01T10:30:00+01:00",
        "2026-12-01T09:30:00+01:00",
    ]
    still = await service.get(tenant, mine.appointment["id"])
    assert still["starts_at"] == "2026-12-01T09:30:00+01:00"
    free = await service.availability(tenant, TUESDAY)
    assert "09:00" in [s.strftime("%H:%M") for s in free.slots]


async def test_find_booked_by_phone(api: Api) -> None:
    service, tenant = await setup(api)
    assert await service.find_booked(tenant, PHONE) is None
    later = await service.book(tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "14:00"))
    sooner = await service.book(tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "09:00"))
    assert later.appointment is not None and sooner.appointment is not None
    found = await service.find_booked(tenant, "+33 6 12 34 56 78")
    assert found is not None and found["id"] == sooner.appointment["id"]
    exact = await service.find_booked(tenant.id, PHONE, at(TUESDAY, "14:00"))
    assert exact is not None and exact["id"] == later.appointment["id"]
    await service.cancel(tenant, sooner.appointment["id"])
    found = await service.find_booked(tenant, PHONE)
    assert found is not None and found["id"] == later.appointment["id"]


async def test_sentences_for_the_voice_assistant(api: Api) -> None:
    service, tenant = await setup(api)
    saturday = await service.availability(tenant, date(2026, 12, 5))
    assert saturday.sentence() == (
        "No free slot on Saturday 5 December; the next free one is Monday 7 December at 09:00."
    )
    assert saturday.public()["next_free"] == "2026-12-07T09:00:00+01:00"
    week = await service.availability(tenant, date(2026, 12, 5), date(2026, 12, 7))
    assert week.sentence().startswith(
        "Free slots between Saturday 5 December and Monday 7 December: Monday 7 December at "
        "09:00, 09:30, 10:00, 10:30, 11:00 and 9 more until 17:30"
    )
    far = await service.availability(tenant, date(2027, 2, 1))
    assert far.slots == [] and "up to Tuesday 19 January" in far.sentence()
    booked = await service.book(tenant, name="Ana", phone=PHONE, start=at(TUESDAY, "09:00"))
    assert booked.sentence() == "Booked for Tuesday 1 December at 09:00."
    taken = await service.book(tenant, name="Bob", phone=phone(2), start=at(TUESDAY, "09:00"))
    assert taken.sentence() == (
        "Tuesday 1 December at 09:00 is no longer free. The next free slots are "
        "Tuesday 1 December at 09:30, 10:00 and 10:30."
    )


async def test_range_is_limited_to_31_days(api: Api) -> None:
    service, tenant = await setup(api)
    found = await service.availability(tenant, TUESDAY, date(2026, 12, 31))
    assert len(found.days) == 31
    with pytest.raises(BookingInvalid) as error:
        await service.availability(tenant, TUESDAY, date(2027, 1, 1))
    assert error.value.reason == "range_too_long"


async def test_a_time_without_offset_is_a_local_wall_time(api: Api) -> None:
    service, tenant = await setup(api)
    result = await service.book(
        tenant.id, name="Ana", phone=PHONE, start=datetime(2026, 12, 1, 9, 0), source="voice"
    )
    assert result.appointment is not None
    assert result.appointment["starts_at"] == "2026-12-01T09:00:00+01:00"
