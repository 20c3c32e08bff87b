"""Every list hands out one kind of cursor, refuses what it did not hand out, and still reads
the cursors it handed out before there was one kind."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.config import Settings
from gateway.errors import ValidationFailed
from gateway.ids import new_id
from gateway.store.paging import decode_cursor, encode_cursor
from tests.conftest import TWILIO, Api, running_api
from tests.test_booking_api import NINE, _book, tenant
from tests.test_messages_api import sms_tenant

LISTS = [
    "/api/messages",
    "/api/calls",
    "/api/prospects",
    "/api/tickets",
    "/api/appointments",
    "/api/communications?contact=%2B33612345678",
]


def test_a_cursor_holds_the_sort_keys_and_only_them() -> None:
    cursor = encode_cursor("2026-12-01T08:00:00.000Z", "apt_01JF0000000000000000000000")
    assert cursor.isascii() and "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor, 2) == (
        "2026-12-01T08:00:00.000Z",
        "apt_01JF0000000000000000000000",
    )
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor, 1)  # a timeline's cursor is not a message list's
    assert caught.value.details["fields"][0]["field"] == "cursor"


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("cursor", ["nonsense", "bXNnXzE", encode_cursor("a", "b", "c")])
async def test_every_list_refuses_a_cursor_it_did_not_hand_out(
    api: Api, path: str, cursor: str
) -> None:
    _, key = await api.create_tenant("acme")
    joiner = "&" if "?" in path else "?"
    response = await api.client.get(f"{path}{joiner}cursor={cursor}", headers=key)
    assert response.status_code == 422, response.text
    [field] = response.json()["error"]["details"]["fields"]
    assert field["field"] == "cursor"


@pytest.fixture
async def sms_api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def test_a_message_list_still_reads_a_bare_id_cursor(sms_api: Api) -> None:
    api = sms_api
    key = await sms_tenant(api)
    for i in range(4):
        sent = await api.client.post(
            "/api/channels/sms/send", headers=key, json={"to": "+33612345678", "body": f"m{i}"}
        )
        assert sent.status_code == 202
    page = (await api.client.get("/api/messages?limit=2", headers=key)).json()
    assert page["next_cursor"] != page["messages"][-1]["id"]  # opaque now

    async def after(cursor: str) -> list[str]:
        response = await api.client.get(f"/api/messages?cursor={cursor}", headers=key)
        assert response.status_code == 200, response.text
        return [m["body"] for m in response.json()["messages"]]

    assert await after(page["next_cursor"]) == ["m1", "m0"]
    assert await after(page["messages"][-1]["id"]) == ["m1", "m0"]  # as handed out before
    assert await after(new_id("msg")) == ["m3", "m2", "m1", "m0"]  # an id from now: all older


async def test_an_appointment_list_still_reads_a_pipe_joined_cursor(api: Api) -> None:
    key = await tenant(api, capacity=3)
    booked = [
        await _book(api, key, NINE),
        await _book(api, key, "2026-12-01T10:00:00+01:00"),
        await _book(api, key, "2026-12-01T11:00:00+01:00"),
    ]
    first = (await api.client.get("/api/appointments?limit=1", headers=key)).json()
    starts_at, appointment_id = decode_cursor(first["next_cursor"], 2)
    # what this list handed out before: base64 of "starts_at|id", unpadded
    old = base64.urlsafe_b64encode(f"{starts_at}|{appointment_id}".encode()).decode().rstrip("=")
    assert json.loads(base64.urlsafe_b64decode(first["next_cursor"] + "==")) == [
        starts_at,
        appointment_id,
    ]

    for cursor in (first["next_cursor"], old):
        response = await api.client.get(f"/api/appointments?cursor={cursor}", headers=key)
        assert response.status_code == 200, response.text
        assert [a["id"] for a in response.json()["appointments"]] == booked[1:]
