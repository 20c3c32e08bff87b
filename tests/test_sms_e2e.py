from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import Stack, eventually, running_stack

CLIENT = "+33612345678"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


async def message(http: httpx.AsyncClient, key: dict[str, str], message_id: str) -> Any:
    response = await http.get(f"/api/messages/{message_id}", headers=key)
    assert response.status_code == 200
    return response.json()


async def wait_status(
    http: httpx.AsyncClient, key: dict[str, str], message_id: str, *statuses: str
) -> Any:
    async def check() -> Any:
        found = await message(http, key, message_id)
        return found if found["status"] in statuses else None

    return await eventually(check)


async def test_sms_from_send_to_delivered_with_costs(stack: Stack) -> None:
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        response = await http.post(
            "/api/channels/sms/send",
            json={
                "to": CLIENT,
                "body": "Votre rendez-vous est confirmé pour demain 10h",
                "message_type": "appointment_reminder",
                "agent": "sara",
            },
            headers=key,
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "queued"
        assert accepted["encoding"] == "GSM-7" and accepted["num_segments"] == 1
        assert accepted["billed_cost"] == 0.07 and accepted["price_per_unit"] == 0.07

        async def priced() -> Any:
            found = await message(http, key, accepted["id"])
            return found if found["provider_cost"] is not None else None

        done = await eventually(priced)
        assert done["status"] == "delivered"
        assert done["provider"] == "twilio" and done["provider_message_id"].startswith("SM")
        assert done["provider_cost_usd"] == -0.0079
        assert done["exchange_rate_usd_eur"] == 0.92
        assert done["provider_cost"] == 0.0073  # 0.0079 * 0.92, rounded to 4 places
        assert done["margin"] == 0.0627
        assert done["sent_at"] and done["delivered_at"]
        assert [e["status"] for e in done["events"] if e["applied"]][:2] == ["queued", "sent"]
    sent = stack.twilio.messages
    assert len(sent) == 1 and sent[0]["to"] == CLIENT and sent[0]["from"] == "+33939035761"


async def test_a_transient_error_is_retried(stack: Stack) -> None:
    stack.twilio.add_fault("429")
    stack.twilio.add_fault("500")
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        response = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
        done = await wait_status(http, key, response.json()["id"], "delivered")
    assert done["attempts"] == 3
    retries = [e for e in done["events"] if e["payload"].get("retry_in_seconds") is not None]
    assert [e["payload"]["code"] for e in retries] == ["20429", "20500"]
    assert len(stack.twilio.messages) == 1


@pytest.mark.parametrize(("fault", "code"), [("21211", "21211"), ("21614", "21614")])
async def test_a_permanent_error_fails_at_once_with_the_reason(
    stack: Stack, fault: str, code: str
) -> None:
    stack.twilio.add_fault(fault)
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        response = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
        done = await wait_status(http, key, response.json()["id"], "failed")
    assert done["error_code"] == code
    assert done["failure_reason"]
    assert done["attempts"] == 1


async def test_an_unsubscribed_recipient_is_suppressed(stack: Stack) -> None:
    stack.twilio.add_fault("21610")
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        first = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
        await wait_status(http, key, first.json()["id"], "failed")
        second = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "recipient_suppressed"
    assert second.json()["error"]["details"]["reason"] == "stop_keyword"


async def test_a_landline_ends_undelivered_with_the_carrier_reason(stack: Stack) -> None:
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        response = await http.post(
            "/api/channels/sms/send", json={"to": "+15005550006", "body": "hi"}, headers=key
        )
        done = await wait_status(http, key, response.json()["id"], "undelivered")
    assert done["error_code"] == "30006"
    assert "landline" in done["failure_reason"]


async def test_duplicate_and_reordered_callbacks_never_regress(stack: Stack) -> None:
    stack.twilio.reorder = True
    stack.twilio.duplicate = True
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        response = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
        message_id = response.json()["id"]
        await wait_status(http, key, message_id, "delivered")

        async def all_callbacks() -> Any:
            found = await message(http, key, message_id)
            callbacks = [e for e in found["events"] if e["source"] == "twilio_status"]
            return found if len(callbacks) >= 4 else None

        done = await eventually(all_callbacks)
    assert done["status"] == "delivered"
    callbacks = [e for e in done["events"] if e["source"] == "twilio_status"]
    assert sorted(e["status"] for e in callbacks) == ["delivered", "delivered", "sent", "sent"]
    assert sum(e["applied"] for e in callbacks) == 1, "only the first delivered changes it"


async def test_a_hang_is_reconciled_not_resent(stack: Stack) -> None:
    stack.twilio.hang_seconds = 3
    stack.twilio.add_fault("hang")
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        response = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "only once"}, headers=key
        )
        done = await wait_status(http, key, response.json()["id"], "sent", "delivered")
    bodies = [m["body"] for m in stack.twilio.messages]
    assert bodies.count("only once") == 1, "the lost answer must not cause a second send"
    assert done["provider_message_id"] == stack.twilio.messages[0]["sid"]


async def test_forged_status_callbacks_are_refused(stack: Stack) -> None:
    from gateway.sandbox.twilio_webhooks import post_signed_form

    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        response = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
        done = await wait_status(http, key, response.json()["id"], "delivered")
        params = {
            "MessageSid": done["provider_message_id"],
            "MessageStatus": "failed",
            "ErrorCode": "30006",
            "AccountSid": "AC" + "a1" * 16,
        }
        url = f"{stack.url}/webhooks/twilio/status"
        unsigned = await http.post(url, data=params)
        wrong_key = await post_signed_form(http, url, params, "not-the-auth-token")
        tampered = await post_signed_form(
            http, url, {**params, "MessageStatus": "sent"}, "twilio-auth-token-0123456789abcdef"
        )
        # a signature over another URL (a replay to a different endpoint) fails too
        replayed = await post_signed_form(
            http,
            url,
            params,
            "twilio-auth-token-0123456789abcdef",
            signing_url=f"{stack.url}/webhooks/twilio/sms",
        )
        assert [r.status_code for r in (unsigned, wrong_key, replayed)] == [403, 403, 403]
        assert tampered.status_code == 204, "a genuine late 'sent' is accepted and ignored"
        after = await message(http, key, done["id"])
    assert after["status"] == "delivered"


async def test_inbound_sms_is_logged_and_stop_start_manage_suppression(stack: Stack) -> None:
    from gateway.sandbox.twilio_webhooks import inbound_sms_params, post_signed_form

    token = "twilio-auth-token-0123456789abcdef"
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        other = await stack.tenant(http, "unrelated")
        first = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
        await wait_status(http, key, first.json()["id"], "delivered")
        url = f"{stack.url}/webhooks/twilio/sms"
        params = inbound_sms_params(CLIENT, "+33939035761", "STOP", "AC" + "a1" * 16)
        reply = await post_signed_form(http, url, params, token)
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/xml")
        again = await post_signed_form(http, url, params, token)  # Twilio retries
        assert again.status_code == 200
        inbound = (await http.get("/api/messages?direction=inbound", headers=key)).json()
        assert [m["body"] for m in inbound["messages"]] == ["STOP"]
        assert (await http.get("/api/messages?direction=inbound", headers=other)).json()[
            "messages"
        ] == []
        blocked = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
        assert blocked.status_code == 409
        assert blocked.json()["error"]["code"] == "recipient_suppressed"
        unaffected = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=other
        )
        assert unaffected.status_code == 202, "STOP applies to the tenants that wrote to them"
        start = inbound_sms_params(CLIENT, "+33939035761", "start", "AC" + "a1" * 16)
        assert (await post_signed_form(http, url, start, token)).status_code == 200
        allowed = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
        )
    assert allowed.status_code == 202
