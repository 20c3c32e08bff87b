"""Exactly once and never backwards, under lost answers, twins and lost callbacks (issue 9,
items 2, 4 and 5). Every exchange crosses a real socket to the Twilio emulator, which counts
what was really sent."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gateway.message_states import MESSAGE_RANK
from gateway.sandbox.server import free_port
from tests.stack import Stack, eventually, running_stack
from tests.test_sms_e2e import message, wait_status

CLIENT = "+33612345678"


def callback_owner(stack: Stack, sid: str) -> str:
    """The message id our StatusCallback URL named when this provider message was created."""
    url = stack.twilio._messages[sid].status_callback
    assert url is not None
    return parse_qs(urlsplit(url).query)["mid"][0]


async def send(http: httpx.AsyncClient, key: dict[str, str], body: str, to: str = CLIENT) -> str:
    response = await http.post("/api/channels/sms/send", json={"to": to, "body": body}, headers=key)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def applied_statuses(found: dict[str, Any]) -> list[str]:
    return [e["status"] for e in found["events"] if e["applied"] and e["status"]]


async def test_twins_whose_answers_were_lost_are_matched_one_to_one(tmp_path: Path) -> None:
    # two tenants on the shared number send the same text to the same client; both answers
    # are lost and the status callbacks come late, so the provider's list is all there is
    with running_stack(tmp_path, DISPATCH_RECONCILE_SECONDS="0.5") as stack:
        stack.twilio.callback_delay = 3.0
        stack.twilio.hang_seconds = 3
        stack.twilio.add_fault("hang", 2)
        async with stack.client() as http:
            first = await stack.tenant(http, "first")
            second = await stack.tenant(http, "second")
            ids = [
                await send(http, first, "Votre code est 1234"),
                await send(http, second, "Votre code est 1234"),
            ]
            keys = [first, second]

            async def both_delivered() -> list[Any] | None:
                found = [await message(http, k, i) for k, i in zip(keys, ids, strict=True)]
                return found if all(f["status"] == "delivered" for f in found) else None

            done = await eventually(both_delivered, within=20)
    sent = stack.twilio.messages
    assert len(sent) == 2, "two messages, two sends: nothing was sent again"
    assert {d["provider_message_id"] for d in done} == {m["sid"] for m in sent}
    for found in done:
        # the callback that named our message id is the proof of which send was whose
        assert callback_owner(stack, found["provider_message_id"]) == found["id"]


async def test_a_lost_answer_is_found_behind_more_than_a_hundred_newer_messages(
    tmp_path: Path,
) -> None:
    with running_stack(
        tmp_path, DISPATCH_RECONCILE_SECONDS="4", DISPATCH_PER_SENDER_RATE="500"
    ) as stack:
        stack.twilio.callback_delay = 60.0  # no callback will tell
        stack.twilio.hang_seconds = 3
        stack.twilio.add_fault("hang")
        async with stack.client() as http:
            key = await stack.tenant(http, "acme")
            lost = await send(http, key, "the one whose answer was lost")
            await eventually(lambda: stack.twilio.create_requests >= 1)
            for n in range(130):
                await send(http, key, f"newer message {n}")
            found = await wait_status(http, key, lost, "sent")
            await eventually(lambda: len(stack.twilio.messages) >= 131, within=20)
    bodies = Counter(m["body"] for m in stack.twilio.messages)
    assert bodies["the one whose answer was lost"] == 1, "not sent a second time"
    assert found["provider_message_id"] == next(
        m["sid"] for m in stack.twilio.messages if m["body"] == "the one whose answer was lost"
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


async def test_a_delivered_message_never_goes_back_to_sent(stack: Stack) -> None:
    # the callbacks say delivered while the send's answer is still on its way; the answer is
    # then lost and the send reconciled: delivered must stay delivered
    stack.twilio.hang_seconds = 3
    stack.twilio.add_fault("hang")
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        message_id = await send(http, key, "delivered before the answer")

        async def reconciled() -> Any:
            found = await message(http, key, message_id)
            events = [e for e in found["events"] if e["source"] == "dispatcher"]
            return found if any("reconcile" in e["payload"] for e in events) else None

        await eventually(reconciled, within=10)
        await asyncio.sleep(1.0)  # time for the reconciliation to act on it
        found = await message(http, key, message_id)
    assert found["status"] == "delivered"
    ranks = [MESSAGE_RANK[s] for s in applied_statuses(found)]
    assert ranks == sorted(ranks) or ranks[:2] == [0, 1], applied_statuses(found)
    assert "sent" not in applied_statuses(found)[applied_statuses(found).index("delivered") :]
    assert len(stack.twilio.messages) == 1


async def test_a_final_status_whose_callback_was_lost_is_polled(tmp_path: Path) -> None:
    # the gateway's public URL points nowhere, as if it was down when Twilio called back
    nowhere = f"http://127.0.0.1:{free_port()}"
    with running_stack(tmp_path, STATUS_POLL_SECONDS="0.5", PUBLIC_BASE_URL=nowhere) as stack:
        async with stack.client() as http:
            key = await stack.tenant(http, "acme")
            message_id = await send(http, key, "callback lost")

            async def priced() -> Any:
                found = await message(http, key, message_id)
                return found if found["provider_cost"] is not None else None

            found = await eventually(priced, within=15)
    assert found["status"] == "delivered"
    assert found["delivered_at"] is not None
    assert found["provider_cost"] == 0.0073 and found["margin"] == 0.0627
    assert any(e["source"] == "poll" and e["applied"] for e in found["events"])
    assert stack.twilio.callbacks.delivered == 0, "no callback ever reached the gateway"
