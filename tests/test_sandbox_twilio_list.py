"""The Twilio emulator's message list, filtered on To (what a reconciliation reads): newest
first, in pages, From-filtered, and never showing a message the emulator forgot (evicted
past `max_messages`, or reset) — the recipient index it reads must follow the messages."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.sandbox.twilio_api import TwilioSandbox

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "list-token"
LIST = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()}


@pytest.fixture
async def sandbox() -> AsyncIterator[TwilioSandbox]:
    emulator = TwilioSandbox(ACCOUNT, TOKEN, callback_delay=3600, max_messages=6)
    yield emulator
    await emulator.aclose()


async def _create(client: httpx.AsyncClient, to: str, sender: str, body: str) -> str:
    form = {"To": to, "From": sender, "Body": body}
    response = await client.post(LIST, data=form, headers=AUTH)
    assert response.status_code == 201, response.text
    sid: str = response.json()["sid"]
    return sid


async def _list(client: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    response = await client.get(LIST, params=query, headers=AUTH)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_a_list_on_to_shows_that_recipients_messages_newest_first_in_pages(
    sandbox: TwilioSandbox,
) -> None:
    transport = httpx.ASGITransport(app=sandbox.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://twilio") as client:
        a1 = await _create(client, "+33611111111", "+15017122661", "one")
        await _create(client, "+33622222222", "+15017122661", "other recipient")
        a2 = await _create(client, "+33611111111", "+15017122662", "two")
        a3 = await _create(client, "+33611111111", "+15017122661", "three")

        first = await _list(client, To="+33611111111", PageSize=2)
        assert [m["sid"] for m in first["messages"]] == [a3, a2]
        assert first["next_page_uri"] is not None
        second = await _list(client, To="+33611111111", PageSize=2, Page=1)
        assert [m["sid"] for m in second["messages"]] == [a1]
        assert second["next_page_uri"] is None

        from_one = await _list(client, To="+33611111111", From="+15017122661")
        assert [m["sid"] for m in from_one["messages"]] == [a3, a1]
        assert (await _list(client, To="+33699999999"))["messages"] == []
        everything = await _list(client)
        assert len(everything["messages"]) == 4


async def test_a_list_never_shows_a_message_the_emulator_forgot(sandbox: TwilioSandbox) -> None:
    transport = httpx.ASGITransport(app=sandbox.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://twilio") as client:
        oldest = await _create(client, "+33611111111", "+15017122661", "oldest")
        kept = [await _create(client, "+33622222222", "+15017122661", f"n{n}") for n in range(6)]
        listed = await _list(client, To="+33611111111")  # evicted past max_messages=6
        assert listed["messages"] == []
        assert oldest not in {m["sid"] for m in (await _list(client))["messages"]}
        assert len((await _list(client, To="+33622222222"))["messages"]) == len(kept)

        sandbox.reset()
        assert (await _list(client, To="+33622222222"))["messages"] == []
        again = await _create(client, "+33622222222", "+15017122661", "after reset")
        assert [m["sid"] for m in (await _list(client, To="+33622222222"))["messages"]] == [again]
