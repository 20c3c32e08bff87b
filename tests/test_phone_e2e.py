"""The whole call: Twilio's voice webhook → Vapi bridge → the assistant's tool calls →
end-of-call report → a confirmation SMS delivered, and the reminders that follow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.sandbox.server import ServerThread
from gateway.sandbox.twilio_webhooks import post_signed_form, voice_call_params
from gateway.sandbox.vapi_api import VapiSandbox, VapiServerMessenger, vapi_call
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, SHARED_NUMBER, Stack, eventually, running_stack

VAPI_KEY = "vapi-private-key-e2e-0001"
SECRET = "vapi-server-secret-0001"
ASSISTANT = "asst-e2e-0001"
NUMBER_ID = "pn-e2e-0001"
FORWARDING = "+33145678901"
CALLER = "+33601020304"
ALL_DAY = {
    d: [{"open": "08:00", "close": "20:00"}]
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


@pytest.fixture
def vapi() -> Iterator[tuple[VapiSandbox, str]]:
    sandbox = VapiSandbox(VAPI_KEY)
    with ServerThread(sandbox.app) as server:
        yield sandbox, server.base_url


@pytest.fixture
def stack(tmp_path: Path, vapi: tuple[VapiSandbox, str]) -> Iterator[Stack]:
    with running_stack(
        tmp_path,
        VAPI_API_BASE=vapi[1],
        VAPI_API_KEY=VAPI_KEY,
        VAPI_WEBHOOK_SECRET=SECRET,
        VOICE_BRIDGE_TIMEOUT_SECONDS="2",
    ) as running:
        yield running


async def phone_tenant(stack: Stack, http: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    key = await stack.tenant(http, "cabinet", channels=("sms",))
    tenant = (await http.get("/admin/tenants", headers=stack.admin)).json()["tenants"][0]
    operator = await http.put(
        f"/admin/tenants/{tenant['id']}/channels/phone/config",
        headers=stack.admin,
        json={
            "vapi_assistant_id": ASSISTANT,
            "vapi_phone_number_id": NUMBER_ID,
            "price_per_minute": 0.15,
        },
    )
    assert operator.status_code == 200, operator.text
    own = await http.put(
        "/api/channels/phone/config",
        headers=key,
        json={
            "forwarding_numbers": [FORWARDING],
            "fallback_number": "+33198765432",
            "booking": {"opening_hours": ALL_DAY, "min_notice_minutes": 0, "slot_minutes": 30},
        },
    )
    assert own.status_code == 200, own.text
    on = await http.post("/api/channels/phone/toggle", json={"enabled": True}, headers=key)
    assert on.status_code == 200, on.text
    return tenant["id"], key


async def incoming_call(stack: Stack, http: httpx.AsyncClient, **extra: Any) -> httpx.Response:
    params = voice_call_params(CALLER, SHARED_NUMBER, ACCOUNT_SID, forwarded_from=FORWARDING)
    params.update(extra)
    return await post_signed_form(http, f"{stack.url}/webhooks/twilio/voice", params, AUTH_TOKEN)


def messenger(
    stack: Stack, http: httpx.AsyncClient, secret: str | None = SECRET, bearer: bool = False
) -> VapiServerMessenger:
    return VapiServerMessenger(f"{stack.url}/api/vapi/functions", secret, http, bearer=bearer)


async def test_a_call_from_ring_to_confirmation_sms(
    stack: Stack, vapi: tuple[VapiSandbox, str]
) -> None:
    sandbox, _ = vapi
    async with stack.client() as http:
        _, key = await phone_tenant(stack, http)
        answer = await incoming_call(stack, http)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/xml")
        assert "<Stream" in answer.text
        [bridged] = sandbox.calls
        assert bridged["assistantId"] == ASSISTANT
        assert bridged["customer"]["number"] == CALLER
        call = vapi_call(ASSISTANT, CALLER, call_id=bridged["id"], phone_number_id=NUMBER_ID)
        vapi_side = messenger(stack, http)

        day = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
        availability = await vapi_side.tool_calls(call, [("check_availability", {"date": day})])
        [result] = availability.json()["results"]
        assert result["name"] == "check_availability" and "error" not in result
        offered = json.loads(result["result"])
        assert offered["sentence"] and offered["slots"]
        slot = offered["slots"][0]
        assert slot.startswith(day)

        booked = await vapi_side.tool_calls(
            call,
            [
                (
                    "book_appointment",
                    json.dumps({"name": "Léa Martin", "start": slot, "service": "Consultation"}),
                )
            ],
        )
        booking = json.loads(booked.json()["results"][0]["result"])
        assert booking["status"] == "booked", booking
        again = await vapi_side.tool_calls(
            call,
            [
                (
                    "book_appointment",
                    {"name": "Someone Else", "phone": "+33611111111", "start": slot},
                )
            ],
        )
        taken = json.loads(again.json()["results"][0]["result"])
        assert taken["status"] == "slot_taken" and taken["alternatives"]

        started = datetime.now(UTC)
        report = await vapi_side.end_of_call_report(
            call,
            started,
            started + timedelta(seconds=95),
            0.12,
            transcript="AI: Bonjour…",
            recording_url="https://recordings.example/r.wav",
            summary="Booked a consultation",
        )
        assert report.status_code == 200

        calls = (await http.get("/api/calls", headers=key)).json()["calls"]
        [logged] = calls
        assert logged["resolved_by"] == "forwarded_from" and logged["outcome"] == "bridged"
        assert logged["vapi_call_id"] == bridged["id"]
        assert logged["duration_seconds"] == 95 and logged["billed_minutes"] == 2
        assert logged["billed_cost"] == 0.3
        assert logged["provider_cost"] == 0.1104  # 0.12 USD * 0.92
        assert logged["margin"] == 0.1896
        assert logged["summary"] == "Booked a consultation"
        assert logged["recording_url"] == "https://recordings.example/r.wav"

        appointment = (await http.get("/api/appointments", headers=key)).json()["appointments"]
        assert [a["customer_name"] for a in appointment] == ["Léa Martin"]
        assert appointment[0]["source"] == "voice" and appointment[0]["call_id"] == bridged["id"]

        async def confirmation() -> Any:
            listing = (await http.get("/api/messages", headers=key)).json()["messages"]
            found = [m for m in listing if m["appointment_id"] == appointment[0]["id"]]
            return found if found and found[0]["status"] == "delivered" else None

        [sms] = await eventually(confirmation)
    assert sms["to"] == CALLER and sms["call_id"] == bridged["id"]
    assert "Léa Martin" in sms["body"] and "confirmé" in sms["body"]
    assert [m["to"] for m in stack.twilio.messages] == [CALLER]


async def test_prospects_and_tickets_from_tool_calls(
    stack: Stack, vapi: tuple[VapiSandbox, str]
) -> None:
    async with stack.client() as http:
        _, key = await phone_tenant(stack, http)
        await incoming_call(stack, http)
        call = vapi_call(ASSISTANT, CALLER, call_id=vapi[0].calls[0]["id"])
        response = await messenger(stack, http).tool_calls(
            call,
            [
                (
                    "qualify_prospect",
                    {
                        "name": "Paul",
                        "project": "buy",
                        "property_type": "flat",
                        "location": "Lyon",
                        "budget": 300000,
                        "timeline": "within_3_months",
                    },
                ),
                ("create_ticket", '{"subject": "Leaking tap", "priority": "high"}'),
            ],
        )
        results = response.json()["results"]
        assert [r["name"] for r in results] == ["qualify_prospect", "create_ticket"]
        assert "score 95/100" in results[0]["result"]  # 15+10+10+15+10+25 + caller's phone 10
        [prospect] = (await http.get("/api/prospects", headers=key)).json()["prospects"]
        assert prospect["score"] == 95 and prospect["contact_phone"] == CALLER
        [ticket] = (await http.get("/api/tickets", headers=key)).json()["tickets"]
    assert ticket["subject"] == "Leaking tap" and ticket["priority"] == "high"
    assert ticket["status"] == "open"


@pytest.mark.parametrize(
    ("calls", "error"),
    [
        ([("teleport", {})], "unknown function"),
        ([("book_appointment", "{not json")], "not valid JSON"),
        ([("book_appointment", {"start": "tomorrow"})], "invalid arguments"),
        ([("create_ticket", ["a list"])], "JSON object"),
        ([("check_availability", {"date": "2026-13-45"})], "date"),
    ],
)
async def test_bad_tool_calls_answer_an_error_the_assistant_can_say(
    stack: Stack, vapi: tuple[VapiSandbox, str], calls: list[Any], error: str
) -> None:
    async with stack.client() as http:
        await phone_tenant(stack, http)
        await incoming_call(stack, http)
        call = vapi_call(ASSISTANT, CALLER, call_id=vapi[0].calls[0]["id"])
        response = await messenger(stack, http).tool_calls(call, calls)
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert error in result["error"] and "result" not in result


async def test_server_secret_and_tenant_are_required(
    stack: Stack, vapi: tuple[VapiSandbox, str]
) -> None:
    async with stack.client() as http:
        tenant_id, _ = await phone_tenant(stack, http)
        await incoming_call(stack, http)
        known = vapi_call(ASSISTANT, CALLER, call_id=vapi[0].calls[0]["id"])
        for wrong in (messenger(stack, http, None), messenger(stack, http, "forged")):
            denied = await wrong.tool_calls(known, [("create_ticket", {"subject": "x"})])
            assert denied.status_code == 403
        bearer = await messenger(stack, http, bearer=True).tool_calls(
            known, [("create_ticket", {"subject": "via bearer"})]
        )
        assert bearer.status_code == 200 and "result" in bearer.json()["results"][0]
        stranger = vapi_call("asst-unknown", CALLER, call_id="call-unknown")
        nobody = await messenger(stack, http).tool_calls(
            stranger, [("create_ticket", {"subject": "x"})]
        )
        assert nobody.status_code == 403
        by_metadata = vapi_call(
            "asst-unknown", CALLER, call_id="call-2", metadata={"tenant_id": tenant_id}
        )
        found = await messenger(stack, http).tool_calls(
            by_metadata, [("create_ticket", {"subject": "meta"})]
        )
        assert found.status_code == 200
        tickets = await stack.app.state.gateway.db.fetchall("SELECT subject FROM tickets")
    assert sorted(t["subject"] for t in tickets) == ["meta", "via bearer"]


async def test_assistant_request_and_status_update(
    stack: Stack, vapi: tuple[VapiSandbox, str]
) -> None:
    async with stack.client() as http:
        _, key = await phone_tenant(stack, http)
        vapi_side = messenger(stack, http)
        imported = vapi_call("", CALLER, call_id="call-imported", phone_number_id=NUMBER_ID)
        answer = await vapi_side.assistant_request(imported)
        assert answer.json() == {"assistantId": ASSISTANT}
        unknown = vapi_call("", CALLER, call_id="call-x", phone_number_id="pn-nobody")
        refused = await vapi_side.assistant_request(unknown)
        assert "error" in refused.json()
        await incoming_call(stack, http)
        call = vapi_call(ASSISTANT, CALLER, call_id=vapi[0].calls[0]["id"])
        update = await vapi_side.status_update(call, "in-progress")
        assert update.status_code == 200
        other = await vapi_side.send({"type": "speech-update", "call": call})
        assert other.status_code == 200
        [logged] = (await http.get("/api/calls", headers=key)).json()["calls"]
    assert logged["status"] == "in-progress"


async def test_assistant_provisioning(stack: Stack, vapi: tuple[VapiSandbox, str]) -> None:
    sandbox, _ = vapi
    async with stack.client() as http:
        key = await stack.tenant(http, "fresh", channels=())
        tenant = (await http.get("/admin/tenants", headers=stack.admin)).json()["tenants"][0]
        created = await http.post(f"/admin/tenants/{tenant['id']}/assistant", headers=stack.admin)
        assert created.status_code == 200, created.text
        assistant_id = created.json()["operator_settings"]["vapi_assistant_id"]
        [assistant] = sandbox.assistants.values()
        assert assistant["id"] == assistant_id
        assert assistant["server"]["url"] == f"{stack.url}/api/vapi/functions"
        assert assistant["server"]["secret"] == SECRET
        names = {t["function"]["name"] for t in assistant["model"]["tools"]}
        assert names == {
            "check_availability",
            "book_appointment",
            "cancel_appointment",
            "reschedule_appointment",
            "qualify_prospect",
            "create_ticket",
        }
        book = next(
            t for t in assistant["model"]["tools"] if t["function"]["name"] == "book_appointment"
        )
        assert {"name", "start"} <= set(book["function"]["parameters"]["required"])
        await http.put("/api/channels/phone/config", json={"greeting": "Allô !"}, headers=key)
        again = await http.post(f"/admin/tenants/{tenant['id']}/assistant", headers=stack.admin)
        assert again.json()["operator_settings"]["vapi_assistant_id"] == assistant_id
        assert len(sandbox.assistants) == 1, "the second sync updates, it does not create"
        assert sandbox.assistants[assistant_id]["firstMessage"] == "Allô !"
        tenant_key = await http.post(f"/admin/tenants/{tenant['id']}/assistant", headers=key)
    assert tenant_key.status_code == 403


async def test_reminders_go_out_once_and_never_for_a_cancelled_appointment(
    stack: Stack, vapi: tuple[VapiSandbox, str]
) -> None:
    gateway = stack.app.state.gateway
    async with stack.client() as http:
        _, key = await phone_tenant(stack, http)
        day = (datetime.now(UTC) + timedelta(days=3)).date()
        slots = (
            await http.get("/api/availability", params={"date": day.isoformat()}, headers=key)
        ).json()["days"][0]["slots"]
        kept, cancelled = slots[0], slots[4]
        ids = []
        for slot, phone in ((kept, "+33622222222"), (cancelled, "+33633333333")):
            made = await http.post(
                "/api/appointments",
                headers=key,
                json={"customer_name": "Client", "customer_phone": phone, "starts_at": slot},
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        await http.patch(f"/api/appointments/{ids[1]}", json={"status": "cancelled"}, headers=key)
        start = datetime.fromisoformat(kept)
        day_before = start.astimezone(UTC) - timedelta(hours=23, minutes=30)
        assert await gateway.reminders.tick(now=day_before) == 1
        assert await gateway.reminders.tick(now=day_before + timedelta(minutes=1)) == 0
        hour_before = start.astimezone(UTC) - timedelta(minutes=50)
        assert await gateway.reminders.tick(now=hour_before) == 1
        assert await gateway.reminders.tick(now=hour_before) == 0
        appointment = (await http.get(f"/api/appointments/{ids[0]}", headers=key)).json()

        async def reminders() -> Any:
            listing = (
                await http.get("/api/messages?message_type=appointment_reminder", headers=key)
            ).json()["messages"]
            return listing if len(listing) == 2 else None

        sent = await eventually(reminders)
    assert {m["to"] for m in sent} == {"+33622222222"}
    assert {m["appointment_id"] for m in sent} == {ids[0]}
    assert appointment["reminder_24h_message_id"] and appointment["reminder_1h_message_id"]
    confirmations = [m for m in stack.twilio.messages if m["to"] == "+33633333333"]
    assert len(confirmations) <= 1, "the cancelled one got its confirmation, no reminder"
