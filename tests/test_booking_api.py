"""The booking endpoints: availability, booking (201, idempotent 200, 409 slot_taken, 422),
listing with filters and cursors, cancel/close/move, and tenant isolation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Api

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # a Friday
PHONE = "+33612345678"
NINE = "2026-12-01T09:00:00+01:00"


def booking(starts_at: str = NINE, **fields: Any) -> dict[str, Any]:
    return {"customer_name": "Ana Martin", "customer_phone": PHONE, "starts_at": starts_at} | fields


async def tenant(api: Api, slug: str = "cabinet", **rules: Any) -> dict[str, str]:
    _, key = await api.create_tenant(slug)
    if rules:
        response = await api.client.put(
            "/api/channels/phone/config", json={"booking": rules}, headers=key
        )
        assert response.status_code == 200, response.text
    api.gateway.booking.clock = lambda: NOW
    return key


async def count(api: Api) -> int:
    row = await api.gateway.db.fetchone("SELECT COUNT(*) AS n FROM rendez_vous")
    return int(row["n"])


def fields_of(response: Any) -> set[str]:
    assert response.status_code == 422, response.text
    return {f["field"] for f in response.json()["error"]["details"]["fields"]}


async def test_availability_of_one_day(api: Api) -> None:
    key = await tenant(api)
    response = await api.client.get("/api/availability?date=2026-12-01", headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["timezone"] == "Europe/Paris" and body["duration_minutes"] == 30
    assert body["days"][0]["date"] == "2026-12-01"
    assert body["days"][0]["slots"][:2] == [NINE, "2026-12-01T09:30:00+01:00"]
    assert body["sentence"].startswith("On Tuesday 1 December, 14 slots are free")
    assert body["next_free"] is None


async def test_availability_of_a_range_with_a_duration(api: Api) -> None:
    key = await tenant(api)
    response = await api.client.get(
        "/api/availability",
        params={"start": "2026-12-05", "end": "2026-12-07", "duration": 90},
        headers=key,
    )
    assert response.status_code == 200, response.text
    days = response.json()["days"]
    assert [d["date"] for d in days] == ["2026-12-05", "2026-12-06", "2026-12-07"]
    assert days[0]["slots"] == [] and days[1]["slots"] == []
    assert days[2]["slots"][-1] == "2026-12-07T16:30:00+01:00"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "date"),
        ("?date=2026-12-01&start=2026-12-01", "date"),
        ("?date=tomorrow", "date"),
        ("?date=2026-02-30", "date"),
        ("?start=2026-12-01&end=2027-01-10", "end"),
        ("?start=2026-12-10&end=2026-12-01", "end"),
        ("?date=2026-12-01&duration=45", "duration"),
        ("?date=2026-12-01&duration=0", "duration"),
        ("?date=2026-12-01&color=red", "color"),
    ],
)
async def test_availability_bad_queries(api: Api, query: str, field: str) -> None:
    key = await tenant(api)
    response = await api.client.get(f"/api/availability{query}", headers=key)
    assert field in fields_of(response)


async def test_book_then_replay_then_slot_taken(api: Api) -> None:
    key = await tenant(api)
    created = await api.client.post(
        "/api/appointments",
        json=booking(customer_email="ana@example.com", service="Cleaning", notes="first visit"),
        headers=key,
    )
    assert created.status_code == 201, created.text
    appointment = created.json()
    assert appointment["id"].startswith("apt_")
    assert appointment["starts_at"] == NINE
    assert appointment["ends_at"] == "2026-12-01T09:30:00+01:00"
    assert appointment["status"] == "booked" and appointment["source"] == "api"
    assert appointment["customer_email"] == "ana@example.com"
    for name in (
        "call_id",
        "confirmation_message_id",
        "reminder_24h_message_id",
        "reminder_1h_message_id",
    ):
        assert appointment[name] is None
    assert appointment["created_at"] and appointment["updated_at"]

    replay = await api.client.post(
        "/api/appointments", json=booking("2026-12-01T08:00:00Z"), headers=key
    )
    assert replay.status_code == 200 and replay.json()["id"] == appointment["id"]
    assert replay.headers["idempotent-replayed"] == "true"

    taken = await api.client.post(
        "/api/appointments", json=booking(customer_phone="+33698765432"), headers=key
    )
    assert taken.status_code == 409
    error = taken.json()["error"]
    assert error["code"] == "slot_taken"
    assert error["details"]["alternatives"] == [
        "2026-12-01T09:30:00+01:00",
        "2026-12-01T10:00:00+01:00",
        "2026-12-01T10:30:00+01:00",
    ]
    assert await count(api) == 1


async def test_concurrent_requests_book_one_place(api: Api) -> None:
    key = await tenant(api)
    responses = await asyncio.gather(
        *(
            api.client.post(
                "/api/appointments",
                json=booking(customer_phone=f"+336{n:08d}"),
                headers=key,
            )
            for n in range(30)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 29
    assert await count(api) == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"customer_name", "customer_phone", "starts_at"}),
        (booking(customer_phone="06 12"), {"customer_phone"}),
        (booking(customer_email="not-an-email"), {"customer_email"}),
        (booking(customer_name=""), {"customer_name"}),
        (booking(customer_name="Ana\r\nBcc: x"), {"customer_name"}),
        (booking("2026-12-01T09:00:00"), {"starts_at"}),
        (booking("soon"), {"starts_at"}),
        (booking(duration_minutes=0), {"duration_minutes"}),
        (booking(duration_minutes=45), {"duration_minutes"}),
        (booking(notes="x" * 2001), {"notes"}),
        (booking(status="booked"), {"status"}),
        (booking("2026-12-05T10:00:00+01:00"), {"starts_at"}),
        (booking("2026-12-01T09:10:00+01:00"), {"starts_at"}),
        (booking("2026-11-20T09:30:00+01:00"), {"starts_at"}),
        (booking("2027-03-01T09:00:00+01:00"), {"starts_at"}),
    ],
)
async def test_book_bad_inputs(api: Api, body: dict[str, Any], fields: set[str]) -> None:
    key = await tenant(api)
    response = await api.client.post("/api/appointments", json=body, headers=key)
    assert fields_of(response) == fields
    assert await count(api) == 0


async def test_start_outside_the_rules_says_why(api: Api) -> None:
    key = await tenant(api)
    response = await api.client.post(
        "/api/appointments", json=booking("2026-12-01T12:30:00+01:00"), headers=key
    )
    error = response.json()["error"]
    assert response.status_code == 422 and error["details"]["reason"] == "outside_opening_hours"
    assert "outside the opening hours (Tuesday: 09:00-12:00, 14:00-18:00)" in error["message"]


async def test_book_needs_json(api: Api) -> None:
    key = await tenant(api)
    response = await api.client.post("/api/appointments", content=b"name=Ana", headers=key)
    assert response.status_code == 415
    assert await count(api) == 0


async def _book(api: Api, key: dict[str, str], starts_at: str, phone: str = PHONE) -> str:
    response = await api.client.post(
        "/api/appointments", json=booking(starts_at, customer_phone=phone), headers=key
    )
    assert response.status_code == 201, response.text
    appointment_id: str = response.json()["id"]
    return appointment_id


async def test_list_is_chronological_with_cursor_and_filters(api: Api) -> None:
    key = await tenant(api, capacity=3)
    later = await _book(api, key, "2026-12-02T14:00:00+01:00")
    first = await _book(api, key, NINE)
    second = await _book(api, key, NINE, phone="+33698765432")
    third = await _book(api, key, "2026-12-01T10:00:00+01:00", phone="+33698765432")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await api.client.get("/api/appointments", params=params, headers=key)).json()
        seen += [a["id"] for a in page["appointments"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*sorted([first, second]), third, later]

    async def ids(**params: Any) -> list[str]:
        response = await api.client.get("/api/appointments", params=params, headers=key)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["appointments"]]

    assert await ids(phone="+33 6 98 76 54 32") == [second, third]
    assert await ids(
        **{"from": "2026-12-01T09:30:00+01:00", "to": "2026-12-02T00:00:00+01:00"}
    ) == [third]
    await api.client.patch(f"/api/appointments/{later}", json={"status": "cancelled"}, headers=key)
    assert await ids(status="cancelled") == [later]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?cursor=nonsense", "cursor"),
        ("?phone=123", "phone"),
        ("?status=lost", "status"),
        ("?from=2026-12-01", "from"),
        ("?limit=0", "limit"),
    ],
)
async def test_list_bad_queries(api: Api, query: str, field: str) -> None:
    key = await tenant(api)
    response = await api.client.get(f"/api/appointments{query}", headers=key)
    assert field in fields_of(response)


async def test_cancel_frees_the_slot(api: Api) -> None:
    key = await tenant(api)
    appointment_id = await _book(api, key, NINE)
    for _ in range(2):  # cancelling twice is fine
        response = await api.client.patch(
            f"/api/appointments/{appointment_id}", json={"status": "cancelled"}, headers=key
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled" and response.json()["cancelled_at"]
    free = await api.client.get("/api/availability?date=2026-12-01", headers=key)
    assert free.json()["days"][0]["slots"][0] == NINE
    again = await api.client.post("/api/appointments", json=booking(), headers=key)
    assert again.status_code == 201 and again.json()["id"] != appointment_id


async def test_reschedule_and_notes(api: Api) -> None:
    key = await tenant(api)
    appointment_id = await _book(api, key, NINE)
    await _book(api, key, "2026-12-01T11:00:00+01:00", phone="+33698765432")
    path = f"/api/appointments/{appointment_id}"
    moved = await api.client.patch(
        path,
        json={"starts_at": "2026-12-01T10:00:00+01:00", "notes": "moved by phone"},
        headers=key,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["starts_at"] == "2026-12-01T10:00:00+01:00"
    assert moved.json()["notes"] == "moved by phone"
    taken = await api.client.patch(
        path, json={"starts_at": "2026-12-01T11:00:00+01:00"}, headers=key
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "slot_taken"
    assert "2026-12-01T11:30:00+01:00" in taken.json()["error"]["details"]["alternatives"]
    # an empty merge patch changes nothing
    same = await api.client.patch(path, json={}, headers=key)
    assert same.status_code == 200 and same.json() == moved.json()
    cleared = await api.client.patch(path, json={"notes": None}, headers=key)
    assert cleared.status_code == 200 and cleared.json()["notes"] is None
    current = await api.client.get(path, headers=key)
    assert current.json()["starts_at"] == "2026-12-01T10:00:00+01:00"


async def test_status_changes_that_are_not_allowed(api: Api) -> None:
    key = await tenant(api)
    appointment_id = await _book(api, key, NINE)
    path = f"/api/appointments/{appointment_id}"
    assert (await api.client.patch(path, json={"status": "cancelled"}, headers=key)).is_success
    reopen = await api.client.patch(path, json={"status": "completed"}, headers=key)
    assert reopen.status_code == 409
    assert reopen.json()["error"]["code"] == "invalid_status_change"
    move = await api.client.patch(
        path, json={"starts_at": "2026-12-01T10:00:00+01:00"}, headers=key
    )
    assert move.status_code == 409
    assert move.json()["error"]["code"] == "appointment_not_booked"
    done = await _book(api, key, "2026-12-01T10:00:00+01:00")
    closed = await api.client.patch(
        f"/api/appointments/{done}", json={"status": "no_show"}, headers=key
    )
    assert closed.status_code == 200 and closed.json()["status"] == "no_show"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "booked"}, "status"),
        ({"status": None}, "body"),
        ({"status": "cancelled", "starts_at": NINE}, "body"),
        ({"starts_at": "2026-12-01T10:00:00"}, "starts_at"),
        ({"starts_at": "2026-12-01T10:10:00+01:00"}, "starts_at"),
        ({"notes": "x" * 2001}, "notes"),
        ({"customer_name": "Bob"}, "customer_name"),
    ],
)
async def test_patch_bad_inputs(api: Api, body: dict[str, Any], field: str) -> None:
    key = await tenant(api)
    appointment_id = await _book(api, key, NINE)
    path = f"/api/appointments/{appointment_id}"
    response = await api.client.patch(path, json=body, headers=key)
    assert field in fields_of(response)
    unchanged = (await api.client.get(path, headers=key)).json()
    assert unchanged["status"] == "booked" and unchanged["starts_at"] == NINE
    assert unchanged["updated_at"] == unchanged["created_at"]


async def test_unknown_and_foreign_appointments_are_404(api: Api) -> None:
    key_a = await tenant(api, "cabinet-a")
    key_b = await tenant(api, "cabinet-b")
    appointment_id = await _book(api, key_a, NINE)
    for path in (f"/api/appointments/{appointment_id}", "/api/appointments/apt_unknown"):
        assert (await api.client.get(path, headers=key_b)).status_code == 404
        patched = await api.client.patch(path, json={"status": "cancelled"}, headers=key_b)
        assert patched.status_code == 404
        assert patched.json()["error"]["code"] == "appointment_not_found"
    listed = await api.client.get("/api/appointments", headers=key_b)
    assert listed.json()["appointments"] == []
    # tenant B's calendar is its own: the same slot is free for B
    other = await api.client.post("/api/appointments", json=booking(), headers=key_b)
    assert other.status_code == 201
    mine = await api.client.get(f"/api/appointments/{appointment_id}", headers=key_a)
    assert mine.json()["status"] == "booked"


async def test_booking_endpoints_need_a_tenant_key(api: Api) -> None:
    for method, path in (
        ("GET", "/api/availability?date=2026-12-01"),
        ("GET", "/api/appointments"),
        ("POST", "/api/appointments"),
        ("PATCH", "/api/appointments/apt_x"),
    ):
        response = await api.client.request(method, path)
        assert response.status_code == 401
    assert (await api.client.get("/api/appointments", headers=api.admin)).status_code == 403


async def test_openapi_describes_booking(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    assert {"get", "post"} <= set(document["paths"]["/api/appointments"])
    assert "patch" in document["paths"]["/api/appointments/{appointment_id}"]
    params = {p["name"] for p in document["paths"]["/api/appointments"]["get"]["parameters"]}
    assert {"status", "phone", "from", "to", "cursor"} <= params
