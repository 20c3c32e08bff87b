"""The phone line's promises under retries and attacks (issue 9, items 1, 3, 10 and 12e):
one Vapi call per CallSid however Twilio's retries overlap, the shared line never claimed
by a tenant, national-format ForwardedFrom, and fallback calls that end."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from gateway.domain.calls import InboundCall
from gateway.sandbox.twilio_webhooks import post_signed_form, voice_call_params
from gateway.sandbox.vapi_api import VapiSandbox
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, SHARED_NUMBER
from tests.test_voice import (
    CALLER,
    FALLBACK,
    Voice,
    _stack,
    assert_bridged,
    call,
    logged,
    make_tenant,
    shared_stack,
    vapi,
    verbs,
    voice,
)

__all__ = ["shared_stack", "vapi", "voice"]  # fixtures used by name


async def _post(v: Voice, url: str, params: dict[str, str]) -> Any:
    return await post_signed_form(v.http, url, params, AUTH_TOKEN)


@pytest.mark.parametrize("retries", [8, 20])
async def test_overlapping_retries_of_one_call_sid_make_one_vapi_call(
    voice: Voice, retries: int
) -> None:
    tenant = await make_tenant(voice)
    params = voice_call_params(CALLER, SHARED_NUMBER, ACCOUNT_SID, tenant.forwarding)
    url = f"{voice.stack.url}/webhooks/twilio/voice"
    answers = await asyncio.gather(*(_post(voice, url, params) for _ in range(retries)))
    assert [a.status_code for a in answers] == [200] * retries
    assert len(voice.vapi.calls) == 1, "one Vapi call for one CallSid"
    assert len({a.text for a in answers}) == 1, "every retry gets the same TwiML"
    assert_bridged(ET.fromstring(answers[0].content), voice.vapi.calls[0])
    [row] = await logged(voice, params["CallSid"])
    assert row["outcome"] == "bridged"


async def test_retries_across_two_instances_make_one_vapi_call(
    tmp_path: Path, vapi: tuple[VapiSandbox, str]
) -> None:
    # two gateways on one database, Twilio's retries landing on either
    vapi[0].reset()
    with _stack(tmp_path, vapi[1]) as first, _stack(tmp_path, vapi[1]) as second:
        async with first.client() as http:
            v = Voice(first, vapi[0], http)
            tenant = await make_tenant(v)
            params = voice_call_params(CALLER, SHARED_NUMBER, ACCOUNT_SID, tenant.forwarding)
            urls = [f"{s.url}/webhooks/twilio/voice" for s in (first, second)] * 5
            answers = await asyncio.gather(*(_post(v, url, params) for url in urls))
    assert len(vapi[0].calls) == 1
    assert len({a.text for a in answers}) == 1


@pytest.mark.parametrize("claimed", ["shared", "listed", "dedicated"])
async def test_a_tenant_cannot_claim_an_operator_number(
    tmp_path: Path, vapi: tuple[VapiSandbox, str], claimed: str
) -> None:
    listed = "+33939012345"
    with _stack(tmp_path, vapi[1], OPERATOR_NUMBERS=f"+33939099999, {listed}") as stack:
        async with stack.client() as http:
            v = Voice(stack, vapi[0], http)
            owner = await make_tenant(v)
            attacker = await make_tenant(v)
            number = {"shared": SHARED_NUMBER, "listed": listed}.get(claimed, owner.dedicated)
            response = await http.put(
                "/api/channels/phone/config",
                json={"forwarding_numbers": ["+33612999001", number]},
                headers=attacker.key,
            )
            config = (await http.get("/api/channels/phone/config", headers=attacker.key)).json()
    assert response.status_code == 409
    body = response.json()["error"]
    assert body["code"] == "number_taken" and body["details"]["number"] == number
    assert config["settings"]["forwarding_numbers"] == [attacker.forwarding], "nothing stored"


async def test_a_tenant_cannot_claim_another_tenants_sms_sender(voice: Voice) -> None:
    sender_owner = await make_tenant(voice)
    sender = "+33939099001"
    put = await voice.http.put(
        f"/admin/tenants/{sender_owner.id}/channels/sms/config",
        json={"sender": sender},
        headers=voice.stack.admin,
    )
    assert put.status_code == 200, put.text
    attacker = await make_tenant(voice)
    response = await voice.http.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": [sender]},
        headers=attacker.key,
    )
    assert response.status_code == 409
    assert response.json()["error"]["details"]["reason"] == "operator_sender"
    # and the operator cannot make a tenant's forwarding number someone's sender
    clash = await voice.http.put(
        f"/admin/tenants/{sender_owner.id}/channels/sms/config",
        json={"sender": attacker.forwarding},
        headers=voice.stack.admin,
    )
    assert clash.status_code == 409


async def test_a_claim_of_the_shared_line_made_before_the_fix_routes_nothing(
    voice: Voice,
) -> None:
    # a row written by an older version: the shared number as a tenant's forwarding number
    squatter = await make_tenant(voice)
    await voice.stack.app.state.gateway.db.execute_write(
        "INSERT INTO tenant_numbers (e164, tenant_id, kind, created_at) "
        "VALUES (?, ?, 'forwarding', '2026-01-01T00:00:00.000Z')",
        (SHARED_NUMBER, squatter.id),
    )
    service = voice.stack.app.state.gateway.voice
    resolution = await service.resolve_tenant(
        InboundCall("CA" + "5" * 32, CALLER, SHARED_NUMBER, forwarded_from=SHARED_NUMBER)
    )
    assert resolution.tenant_id is None
    assert await service.tenant_for_called_number(SHARED_NUMBER) is None
    await voice.stack.app.state.gateway.db.execute_write(
        "DELETE FROM tenant_numbers WHERE e164 = ?", (SHARED_NUMBER,)
    )


async def test_a_national_format_forwarded_from_finds_the_tenant(voice: Voice) -> None:
    tenant = await make_tenant(voice)
    national = "0" + tenant.forwarding[3:]  # +33612000042 -> 0612000042
    twiml, params = await call(voice, forwarded_from=national)
    assert_bridged(twiml, voice.vapi.calls[0])
    [row] = await logged(voice, params["CallSid"])
    assert row["tenant_id"] == tenant.id and row["resolved_by"] == "forwarded_from"


async def test_a_fallback_dial_call_ends(voice: Voice) -> None:
    tenant = await make_tenant(voice)
    voice.vapi.add_fault("500")
    twiml, params = await call(voice, forwarded_from=tenant.forwarding)
    assert verbs(twiml) == ["Say", "Dial"]
    dial = twiml.find("Dial")
    assert dial is not None and dial.text == FALLBACK
    action = dial.get("action")
    assert action == f"{voice.stack.url}/webhooks/twilio/call-status"
    [row] = await logged(voice, params["CallSid"])
    assert row["status"] == "ringing"
    # Twilio asks the Dial's action what to do once the transferred call ended
    ended = await _post(
        voice,
        action,
        {
            "CallSid": params["CallSid"],
            "AccountSid": ACCOUNT_SID,
            "CallStatus": "in-progress",
            "DialCallStatus": "completed",
            "DialCallDuration": "42",
            "DialCallSid": "CA" + "1" * 32,
        },
    )
    assert ended.status_code == 200
    assert verbs(ET.fromstring(ended.content)) == ["Hangup"]
    # then the number's status callback; a late "in-progress" changes nothing
    for status in ("completed", "in-progress"):
        late = await _post(
            voice,
            action,
            {
                "CallSid": params["CallSid"],
                "AccountSid": ACCOUNT_SID,
                "CallStatus": status,
                "CallDuration": "50",
            },
        )
        assert late.status_code == 200
    [row] = await logged(voice, params["CallSid"])
    assert row["status"] == "completed"
    assert row["ended_at"] is not None and row["duration_seconds"] == 42.0
    forged = await post_signed_form(
        voice.http, action, {"CallSid": params["CallSid"], "CallStatus": "busy"}, "wrong"
    )
    assert forged.status_code == 403
