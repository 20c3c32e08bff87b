from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gateway.channel_models import WhatsAppConfig, WhatsAppTemplate
from gateway.providers.base import OutboundMessage, ProviderError
from gateway.providers.whatsapp.cloud import WhatsAppCloud, classify_response, template_object
from gateway.providers.whatsapp.webhooks import (
    parse_webhook,
    status_error,
    subscription_challenge,
    verify_meta_signature,
)
from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.whatsapp_api import WhatsAppSandbox
from tests.conftest import Api

TOKEN = "EAAG-adapter-token"
D360_KEY = "d360-adapter-key"
APP_SECRET = "adapter-app-secret"
PHONE_ID = "106540352242922"
VERSION = "v21.0"
TO = "+33612345678"


def meta_config(**changes: Any) -> WhatsAppConfig:
    values: dict[str, Any] = {
        "provider": "meta_cloud",
        "phone_number_id": PHONE_ID,
        "access_token": SecretStr(TOKEN),
        "app_secret": SecretStr(APP_SECRET),
        "templates": {"reminder": WhatsAppTemplate(name="appointment_reminder", language="fr")},
    }
    return WhatsAppConfig(**{**values, **changes})


def d360_config(key: str = D360_KEY) -> WhatsAppConfig:
    return WhatsAppConfig(provider="360dialog", api_key=SecretStr(key))


def outbound(config: WhatsAppConfig, **changes: Any) -> OutboundMessage:
    values: dict[str, Any] = {"id": "msg_1", "tenant_id": "t_1", "to": TO, "body": "Hello"}
    return OutboundMessage(config=config, **{**values, **changes})


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes


@dataclass
class Receiver:
    requests: list[Received] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.requests.append(
            Received(request.url.path, dict(request.headers), await request.body())
        )
        return Response(status_code=200)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@dataclass
class Env:
    sandbox: WhatsAppSandbox
    adapter: WhatsAppCloud
    receiver: Receiver
    base: str
    tag: str

    def adapter_with(self, timeout: float) -> WhatsAppCloud:
        return WhatsAppCloud(self.base, VERSION, self.base, timeout=timeout)

    async def hooks(self, name: str, count: int) -> list[Received]:
        path = f"/{self.tag}/{name}"
        await eventually(lambda: len(self.receiver.on(path)) >= count)
        return self.receiver.on(path)


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def receiver_url() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    with ServerThread(app) as server:
        yield receiver, server.base_url


@pytest.fixture
async def env(receiver_url: tuple[Receiver, str]) -> AsyncIterator[Env]:
    receiver, receiver_base = receiver_url
    tag = uuid.uuid4().hex  # a path per test keeps one test's webhooks out of another's
    sandbox = WhatsAppSandbox(
        TOKEN,
        D360_KEY,
        APP_SECRET,
        callback_delay=0.01,
        webhook_url=f"{receiver_base}/{tag}/meta",
        d360_webhook_url=f"{receiver_base}/{tag}/d360",
        hang_seconds=5.0,
    )
    with ServerThread(sandbox.app) as server:
        adapter = WhatsAppCloud(server.base_url, VERSION, server.base_url, timeout=5.0)
        try:
            yield Env(sandbox, adapter, receiver, server.base_url, tag)
        finally:
            await adapter.aclose()
            sandbox.reset()  # releases a hung answer so the server stops at once


async def send_error(adapter: WhatsAppCloud, message: OutboundMessage) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await adapter.send(message)
    return caught.value


# -- sending -------------------------------------------------------------------------------


async def test_meta_text_send_returns_the_wamid(env: Env) -> None:
    result = await env.adapter.send(outbound(meta_config()))

    assert result.provider == "meta_cloud"
    assert result.provider_message_id.startswith("wamid.")
    assert (result.provider_status, result.status) == ("accepted", "sent")
    sent = env.sandbox.sent[0]
    assert sent.path == f"/{VERSION}/{PHONE_ID}/messages"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.wamid == result.provider_message_id
    assert sent.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "33612345678",
        "type": "text",
        "text": {"body": "Hello", "preview_url": False},
    }


async def test_template_send_uses_the_tenants_template(env: Env) -> None:
    config = meta_config()
    components = [{"type": "body", "parameters": [{"type": "text", "text": "14:30"}]}]
    template = template_object(config.templates["reminder"], ["14:30"])

    result = await env.adapter.send(outbound(config, body=None, template=template))

    assert result.provider_message_id.startswith("wamid.")
    assert result.provider_status == "accepted"
    body = env.sandbox.sent[0].body
    assert body["type"] == "template"
    assert body["template"] == {
        "name": "appointment_reminder",
        "language": {"code": "fr"},
        "components": components,
    }
    assert "text" not in body


def test_template_variables_become_positional_or_named_body_parameters() -> None:
    template = WhatsAppTemplate(name="appointment_reminder", language="fr")
    named = template_object(template, {"name": "Léa", "time": "10h"})
    assert named["components"] == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "parameter_name": "name", "text": "Léa"},
                {"type": "text", "parameter_name": "time", "text": "10h"},
            ],
        }
    ]
    assert template_object(template) == {
        "name": "appointment_reminder",
        "language": {"code": "fr"},
    }


async def test_unknown_template_alias_is_refused_before_anything_is_stored(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    config = {
        "phone_number_id": PHONE_ID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": "vt-1",
        "templates": {"reminder": {"name": "appointment_reminder", "language": "fr"}},
    }
    saved = await api.client.post("/api/channels/whatsapp/config", json=config, headers=key)
    assert saved.status_code == 200, saved.text
    on = await api.client.post("/api/channels/whatsapp/toggle", json={"enabled": True}, headers=key)
    assert on.status_code == 200, on.text

    response = await api.client.post(
        "/api/channels/whatsapp/send", json={"to": TO, "template": "missing"}, headers=key
    )

    assert response.status_code == 422
    [field] = response.json()["error"]["details"]["fields"]
    assert field["field"] == "template"
    listed = await api.client.get("/api/messages", headers=key)
    assert listed.json()["messages"] == []


async def test_360dialog_send_uses_its_key_header(env: Env) -> None:
    result = await env.adapter.send(outbound(d360_config()))

    assert result.provider == "360dialog"
    assert result.provider_message_id.startswith("wamid.")
    sent = env.sandbox.sent[0]
    assert sent.provider == "360dialog"
    assert sent.path == "/messages"
    assert sent.headers["d360-api-key"] == D360_KEY
    assert sent.body["to"] == "33612345678"
    assert sent.body["text"] == {"body": "Hello", "preview_url": False}


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "fault", "kind", "code"),
    [
        ("meta_cloud", "130429", "transient", "130429"),
        ("meta_cloud", "190", "configuration", "190"),
        ("meta_cloud", "500", "transient", "131000"),
        ("360dialog", "130429", "transient", "130429"),
        ("360dialog", "190", "configuration", "401"),
        ("360dialog", "500", "transient", "500"),
    ],
)
async def test_provider_errors_are_classified(
    env: Env, provider: str, fault: str, kind: str, code: str
) -> None:
    env.sandbox.add_fault(fault)
    config = meta_config() if provider == "meta_cloud" else d360_config()

    error = await send_error(env.adapter, outbound(config))

    assert (error.kind, error.code) == (kind, code)
    assert error.reason


async def test_wrong_token_is_a_configuration_error(env: Env) -> None:
    error = await send_error(env.adapter, outbound(meta_config(access_token=SecretStr("nope"))))

    assert (error.kind, error.code) == ("configuration", "190")
    assert "token" in error.reason


async def test_wrong_360dialog_key_is_a_configuration_error(env: Env) -> None:
    error = await send_error(env.adapter, outbound(d360_config("wrong-key")))

    assert (error.kind, error.code) == ("configuration", "401")
    assert env.sandbox.sent == []


async def test_missing_token_is_a_configuration_error_without_a_request(env: Env) -> None:
    error = await send_error(env.adapter, outbound(meta_config(access_token=None)))

    assert error.kind == "configuration"
    assert "access_token" in error.reason
    assert env.sandbox.sent == []


async def test_graph_missing_token_answer_is_a_configuration_error(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.base) as client:
        response = await client.post(
            f"/{VERSION}/{PHONE_ID}/messages", json={"messaging_product": "whatsapp"}
        )

    error = classify_response(response)

    assert (error.kind, error.code) == ("configuration", "104")


async def test_invalid_parameter_is_permanent(env: Env) -> None:
    error = await send_error(env.adapter, outbound(meta_config(), body="x" * 5000))

    assert (error.kind, error.code) == ("permanent", "100")


async def test_no_answer_is_unknown_so_the_message_is_not_resent_blindly(env: Env) -> None:
    env.sandbox.add_fault("hang")
    adapter = env.adapter_with(timeout=0.5)
    try:
        error = await send_error(adapter, outbound(meta_config()))
    finally:
        await adapter.aclose()

    assert error.kind == "unknown"
    # the emulated provider did take the message: resending would send it twice
    assert len(env.sandbox.sent) == 1


async def test_closed_port_is_transient() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    adapter = WhatsAppCloud(base, VERSION, base, timeout=2.0)
    try:
        error = await send_error(adapter, outbound(meta_config()))
    finally:
        await adapter.aclose()

    assert error.kind == "transient"


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (429, {"retry-after": "7"}, "slow down", "transient", 7.0),
        (503, {"retry-after": "2"}, "<html>Service Unavailable</html>", "transient", 2.0),
        (502, {}, "<html>Bad Gateway</html>", "transient", None),
        (403, {}, '{"error": {"code": 10, "message": "denied"}}', "configuration", None),
        (404, {}, "not found", "permanent", None),
    ],
)
async def test_answers_from_proxies_and_gateways(
    status: int, headers: dict[str, str], body: str, kind: str, retry_after: float | None
) -> None:
    async def answer(request: Request) -> Response:
        return PlainTextResponse(body, status_code=status, headers=headers)

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["POST"])])
    with ServerThread(app) as server:
        adapter = WhatsAppCloud(server.base_url, VERSION, server.base_url)
        try:
            error = await send_error(adapter, outbound(meta_config()))
        finally:
            await adapter.aclose()

    assert (error.kind, error.retry_after) == (kind, retry_after)


@pytest.mark.parametrize("code", ["131047", "131026"])
async def test_async_failure_arrives_as_a_failed_status_webhook(env: Env, code: str) -> None:
    env.sandbox.add_fault(code)

    result = await env.adapter.send(outbound(meta_config()))
    hooks = await env.hooks("meta", 1)
    statuses, inbound = parse_webhook(json.loads(hooks[0].raw))

    assert result.status == "sent"  # the send itself was accepted
    assert inbound == []
    [update] = statuses
    assert (update.wamid, update.status, update.error_code) == (
        result.provider_message_id,
        "failed",
        code,
    )
    assert update.recipient_id == "33612345678"
    error = status_error(update)
    assert error is not None
    assert (error.kind, error.code) == ("permanent", code)
    if code == "131047":
        assert "24-hour" in error.reason
        assert "template" in error.reason


async def test_status_webhooks_parse_into_sent_delivered_read(env: Env) -> None:
    result = await env.adapter.send(outbound(meta_config()))

    hooks = await env.hooks("meta", 3)
    updates = [u for h in hooks for u in parse_webhook(json.loads(h.raw))[0]]

    assert [u.status for u in updates] == ["sent", "delivered", "read"]
    assert {u.wamid for u in updates} == {result.provider_message_id}
    assert all(u.error_code is None and status_error(u) is None for u in updates)
    assert updates[0].timestamp.tzinfo is not None


# -- webhook helpers -----------------------------------------------------------------------


async def test_signature_accepts_the_signed_bytes_and_rejects_tampering(env: Env) -> None:
    await env.adapter.send(outbound(meta_config()))
    [hook, *_] = await env.hooks("meta", 1)
    signature = hook.headers["x-hub-signature-256"]
    tampered = hook.raw.replace(b'"sent"', b'"read"')
    assert tampered != hook.raw

    assert verify_meta_signature(hook.raw, signature, APP_SECRET)
    assert not verify_meta_signature(tampered, signature, APP_SECRET)
    assert not verify_meta_signature(hook.raw, signature, "another-secret")
    assert not verify_meta_signature(hook.raw, None, APP_SECRET)
    assert not verify_meta_signature(hook.raw, signature.removeprefix("sha256="), APP_SECRET)
    assert not verify_meta_signature(hook.raw, signature, "")


async def test_signature_must_be_checked_on_the_raw_bytes(env: Env) -> None:
    # Meta escapes "/" and non-ASCII: a body parsed and re-encoded no longer matches.
    await env.sandbox.send_inbound_message("33612345678", "à 14h/15h", PHONE_ID)
    [hook] = await env.hooks("meta", 1)
    reencoded = json.dumps(json.loads(hook.raw), separators=(",", ":")).encode()

    assert verify_meta_signature(hook.raw, hook.headers["x-hub-signature-256"], APP_SECRET)
    assert not verify_meta_signature(reencoded, hook.headers["x-hub-signature-256"], APP_SECRET)


@pytest.mark.parametrize(("provider", "path"), [("meta_cloud", "meta"), ("360dialog", "d360")])
async def test_inbound_message_is_parsed(env: Env, provider: str, path: str) -> None:
    await env.sandbox.send_inbound_message(
        "33612345678", "Bonjour, à demain/ok", PHONE_ID, provider, profile_name="Élise"
    )
    [hook] = await env.hooks(path, 1)

    statuses, inbound = parse_webhook(json.loads(hook.raw))

    assert statuses == []
    [message] = inbound
    assert message.from_wa_id == "+33612345678"
    assert message.phone_number_id == PHONE_ID
    assert (message.type, message.text) == ("text", "Bonjour, à demain/ok")
    assert message.profile_name == "Élise"
    assert message.wamid.startswith("wamid.")


def test_parse_webhook_skips_malformed_items() -> None:
    good_status = {"id": "wamid.A", "status": "delivered", "timestamp": "1700000000"}
    good_message = {"from": "4915112345678", "id": "wamid.B", "timestamp": "1700000001"}
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            "junk",
            {"changes": None},
            {
                "id": "1",
                "changes": [
                    {"field": "account_update", "value": {"statuses": [good_status]}},
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": PHONE_ID},
                            "statuses": [
                                {"id": "wamid.X"},
                                {"id": "wamid.Y", "status": "read", "timestamp": "soon"},
                                7,
                                good_status,
                            ],
                            "messages": [
                                {"id": "wamid.Z", "timestamp": "1700000001"},
                                {**good_message, "type": "sticker", "sticker": {"id": "9"}},
                            ],
                            "contacts": "nobody",
                            "unexpected": {"extra": True},
                        },
                    },
                ],
            },
        ],
    }

    statuses, inbound = parse_webhook(payload)

    assert [(s.wamid, s.status) for s in statuses] == [("wamid.A", "delivered")]
    assert [(m.wamid, m.from_wa_id, m.type, m.text) for m in inbound] == [
        ("wamid.B", "+4915112345678", "sticker", None)
    ]
    assert parse_webhook(None) == ([], [])
    assert parse_webhook({"entry": "nope"}) == ([], [])


def test_subscription_challenge_echoes_only_for_the_right_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "vt-1", "hub.challenge": "1158201444"}

    assert subscription_challenge(query, "vt-1") == "1158201444"
    assert subscription_challenge(query, "vt-2") is None
    assert subscription_challenge({**query, "hub.mode": "unsubscribe"}, "vt-1") is None
    assert subscription_challenge(query, "") is None
