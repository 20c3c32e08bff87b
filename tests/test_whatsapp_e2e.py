from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.sandbox.server import ServerThread
from gateway.sandbox.whatsapp_api import WhatsAppSandbox, sign_meta_payload
from tests.stack import Stack, eventually, running_stack

CLIENT = "+33612345678"
TOKEN = "EAAG-sandbox-access-token-0001"
APP_SECRET = "meta-app-secret-0001"
VERIFY = "verify-token-0001"
D360_KEY = "d360-api-key-000000001"
PHONE_ID = "106540352242922"


@pytest.fixture
def whatsapp() -> Iterator[tuple[WhatsAppSandbox, str]]:
    sandbox = WhatsAppSandbox(TOKEN, D360_KEY, APP_SECRET, callback_delay=0.01)
    with ServerThread(sandbox.app) as server:
        yield sandbox, server.base_url


@pytest.fixture
def stack(tmp_path: Path, whatsapp: tuple[WhatsAppSandbox, str]) -> Iterator[Stack]:
    _, url = whatsapp
    with running_stack(tmp_path, WHATSAPP_GRAPH_BASE=url, D360_API_BASE=url) as running:
        yield running


async def whatsapp_tenant(
    stack: Stack, http: httpx.AsyncClient, sandbox: WhatsAppSandbox, provider: str = "meta_cloud"
) -> dict[str, str]:
    key = await stack.tenant(http, "acme", channels=())
    config: dict[str, Any] = {
        "provider": provider,
        "phone_number_id": PHONE_ID,
        "verify_token": VERIFY,
        "templates": {"reminder": {"name": "appointment_reminder", "language": "fr"}},
    }
    if provider == "meta_cloud":
        config.update(access_token=TOKEN, app_secret=APP_SECRET)
        sandbox.webhook_url = f"{stack.url}/webhooks/whatsapp/acme"
    else:
        config.update(api_key=D360_KEY)
        sandbox.d360_webhook_url = f"{stack.url}/webhooks/whatsapp/acme"
        sandbox.d360_webhook_headers = {"X-Webhook-Secret": VERIFY}
    saved = await http.post("/api/channels/whatsapp/config", json=config, headers=key)
    assert saved.status_code == 200, saved.text
    on = await http.post("/api/channels/whatsapp/toggle", json={"enabled": True}, headers=key)
    assert on.status_code == 200, on.text
    return key


async def wait_for(http: httpx.AsyncClient, key: dict[str, str], mid: str, status: str) -> Any:
    async def check() -> Any:
        found = (await http.get(f"/api/messages/{mid}", headers=key)).json()
        return found if found["status"] == status else None

    return await eventually(check)


@pytest.mark.parametrize("provider", ["meta_cloud", "360dialog"])
async def test_whatsapp_from_send_to_read(
    stack: Stack, whatsapp: tuple[WhatsAppSandbox, str], provider: str
) -> None:
    sandbox, _ = whatsapp
    async with stack.client() as http:
        key = await whatsapp_tenant(stack, http, sandbox, provider)
        response = await http.post(
            "/api/channels/whatsapp/send", json={"to": CLIENT, "text": "Bonjour !"}, headers=key
        )
        assert response.status_code == 202, response.text
        done = await wait_for(http, key, response.json()["id"], "read")
    assert done["provider"] == provider
    assert done["provider_message_id"].startswith("wamid.")
    assert done["delivered_at"] is not None
    [sent] = sandbox.sent
    assert sent.body["to"] == CLIENT[1:] and sent.body["text"]["body"] == "Bonjour !"


async def test_whatsapp_template_send(stack: Stack, whatsapp: tuple[WhatsAppSandbox, str]) -> None:
    sandbox, _ = whatsapp
    async with stack.client() as http:
        key = await whatsapp_tenant(stack, http, sandbox)
        response = await http.post(
            "/api/channels/whatsapp/send",
            headers=key,
            json={"to": CLIENT, "template": "reminder", "variables": ["Léa", "10h"]},
        )
        assert response.status_code == 202
        await wait_for(http, key, response.json()["id"], "read")
    template = sandbox.sent[0].body["template"]
    assert template["name"] == "appointment_reminder"
    assert template["language"] == {"code": "fr"}
    assert [p["text"] for p in template["components"][0]["parameters"]] == ["Léa", "10h"]


async def test_outside_the_24_hour_window_fails_with_the_reason(
    stack: Stack, whatsapp: tuple[WhatsAppSandbox, str]
) -> None:
    sandbox, _ = whatsapp
    sandbox.add_fault("131047")
    async with stack.client() as http:
        key = await whatsapp_tenant(stack, http, sandbox)
        response = await http.post(
            "/api/channels/whatsapp/send", json={"to": CLIENT, "text": "hello"}, headers=key
        )
        done = await wait_for(http, key, response.json()["id"], "failed")
    assert done["error_code"] == "131047"
    assert done["failure_reason"]


async def test_a_bad_token_fails_and_shows_on_the_channel(
    stack: Stack, whatsapp: tuple[WhatsAppSandbox, str]
) -> None:
    sandbox, _ = whatsapp
    sandbox.add_fault("190")
    async with stack.client() as http:
        key = await whatsapp_tenant(stack, http, sandbox)
        response = await http.post(
            "/api/channels/whatsapp/send", json={"to": CLIENT, "text": "hello"}, headers=key
        )
        done = await wait_for(http, key, response.json()["id"], "failed")
        assert done["error_code"] == "190" and done["attempts"] == 1
        config = (await http.get("/api/channels/whatsapp/config", headers=key)).json()
    assert config["last_error"]


async def test_webhook_verification_handshake(
    stack: Stack, whatsapp: tuple[WhatsAppSandbox, str]
) -> None:
    sandbox, _ = whatsapp
    async with stack.client() as http:
        await whatsapp_tenant(stack, http, sandbox)
        ok = await http.get(
            "/webhooks/whatsapp/acme",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY,
                "hub.challenge": "1158201444",
            },
        )
        assert ok.status_code == 200 and ok.text == "1158201444"
        wrong = await http.get(
            "/webhooks/whatsapp/acme",
            params={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "x"},
        )
        assert wrong.status_code == 403
        unknown = await http.get(
            "/webhooks/whatsapp/nobody",
            params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "x"},
        )
        # an unknown slug is refused like a wrong token: slugs cannot be enumerated
        assert unknown.status_code == 403 and unknown.json() == wrong.json()


async def test_forged_webhooks_are_refused_and_write_nothing(
    stack: Stack, whatsapp: tuple[WhatsAppSandbox, str]
) -> None:
    sandbox, _ = whatsapp
    async with stack.client() as http:
        key = await whatsapp_tenant(stack, http, sandbox)
        response = await http.post(
            "/api/channels/whatsapp/send", json={"to": CLIENT, "text": "hello"}, headers=key
        )
        done = await wait_for(http, key, response.json()["id"], "read")
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": PHONE_ID},
                                "statuses": [
                                    {
                                        "id": done["provider_message_id"],
                                        "status": "failed",
                                        "timestamp": "1700000000",
                                        "recipient_id": CLIENT[1:],
                                        "errors": [{"code": 131026, "title": "forged"}],
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
        raw = json.dumps(payload).encode()
        for headers in ({}, {"X-Hub-Signature-256": sign_meta_payload(raw, "wrong-secret")}):
            forged = await http.post("/webhooks/whatsapp/acme", content=raw, headers=headers)
            assert forged.status_code == 403
        after = (await http.get(f"/api/messages/{done['id']}", headers=key)).json()
    assert after["status"] == "read"
    assert len(after["events"]) == len(done["events"])


async def test_inbound_message_is_logged_once(
    stack: Stack, whatsapp: tuple[WhatsAppSandbox, str]
) -> None:
    sandbox, _ = whatsapp
    async with stack.client() as http:
        key = await whatsapp_tenant(stack, http, sandbox)
        response = await sandbox.send_inbound_message(CLIENT[1:], "Je confirme / merci", PHONE_ID)
        assert response.status_code == 200

        async def logged() -> Any:
            listing = (await http.get("/api/messages?direction=inbound", headers=key)).json()
            return listing["messages"]

        [inbound] = await eventually(logged)
    assert inbound["from"] == CLIENT and inbound["body"] == "Je confirme / merci"
    assert inbound["status"] == "received" and inbound["channel"] == "whatsapp"
