"""A moved appointment tells the customer its new time, and its reminders follow it (issue 9,
item 9): the confirmation is a new message with the new time, not a replay of the old one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.stack import Stack, eventually
from tests.test_phone_e2e import phone_tenant, stack, vapi

__all__ = ["stack", "vapi"]
CUSTOMER = "+33622222222"


async def sms_to_customer(stack: Stack, count: int) -> list[str]:
    async def arrived() -> list[str] | None:
        bodies = [m["body"] for m in stack.twilio.messages if m["to"] == CUSTOMER]
        return bodies if len(bodies) >= count else None

    found: list[str] = await eventually(arrived)
    return found


async def slots(http: httpx.AsyncClient, key: dict[str, str]) -> list[str]:
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    found = await http.get("/api/availability", params={"date": day.isoformat()}, headers=key)
    result: list[str] = found.json()["days"][0]["slots"]
    return result


def hhmm(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%H:%M")


async def test_a_moved_appointment_gets_a_new_confirmation_and_reminders(stack: Stack) -> None:
    gateway = stack.app.state.gateway
    async with stack.client() as http:
        _, key = await phone_tenant(stack, http)
        free = await slots(http, key)
        first, later = free[0], free[6]
        made = await http.post(
            "/api/appointments",
            headers=key,
            json={"customer_name": "Ana", "customer_phone": CUSTOMER, "starts_at": first},
        )
        assert made.status_code == 201, made.text
        appointment_id = made.json()["id"]
        [confirmation] = await sms_to_customer(stack, 1)
        assert hhmm(first) in confirmation
        before = (await http.get(f"/api/appointments/{appointment_id}", headers=key)).json()
        # the 24 h reminder for the first time goes out, then the appointment moves
        start = datetime.fromisoformat(first).astimezone(UTC)
        assert await gateway.reminders.tick(now=start - timedelta(hours=23, minutes=30)) == 1
        await sms_to_customer(stack, 2)
        moved = await http.patch(
            f"/api/appointments/{appointment_id}", json={"starts_at": later}, headers=key
        )
        assert moved.status_code == 200, moved.text
        bodies = await sms_to_customer(stack, 3)
        assert hhmm(later) in bodies[2] and hhmm(first) not in bodies[2]
        assert "déplacé" in bodies[2]
        after = (await http.get(f"/api/appointments/{appointment_id}", headers=key)).json()
        new_start = datetime.fromisoformat(later).astimezone(UTC)
        # reminders follow the new time
        assert await gateway.reminders.tick(now=new_start - timedelta(hours=23, minutes=30)) == 1
        bodies = await sms_to_customer(stack, 4)
        assert hhmm(later) in bodies[3]
        listing: Any = (
            await http.get(f"/api/messages?to={CUSTOMER.replace('+', '%2B')}", headers=key)
        ).json()
    assert before["confirmation_message_id"] is not None
    assert after["confirmation_message_id"] not in (None, before["confirmation_message_id"])
    assert len({m["id"] for m in listing["messages"]}) == 4
