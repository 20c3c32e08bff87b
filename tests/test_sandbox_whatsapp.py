from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.whatsapp_api import (
    D360Channel,
    MetaAccount,
    WhatsAppSandbox,
    meta_json_bytes,
    sign_meta_payload,
)

TOKEN = "EAAG-sandbox-token"
D360_KEY = "d360-sandbox-key"
APP_SECRET = "app-secret-1"
PHONE_ID = "106540352242922"
SEND_PATH = f"/v21.0/{PHONE_ID}/messages"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXT = {"messaging_product": "whatsapp", "to": "+33 6 12 34 56 78", "type": "text"}


def text_body(body: str = "Hello") -> dict[str, Any]:
    return {**TEXT, "recipient_type": "individual", "text": {"body": body}}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)

    def statuses(self) -> list[dict[str, Any]]:
        statuses: list[dict[str, Any]] = self.json()["entry"][0]["changes"][0]["value"]["statuses"]
        return statuses

    def signature_valid(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-hub-signature-256", ""), expected)


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
    receiver: Receiver
    client: httpx.AsyncClient
    base: str
    tag: str

    def path(self, name: str) -> str:
        # A path per test keeps webhooks of one test from being counted in another.
        return f"/{self.tag}/{name}"

    def url(self, name: str) -> str:
        return self.base + self.path(name)


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
    receiver, base = receiver_url
    tag = uuid.uuid4().hex
    sandbox = WhatsAppSandbox(TOKEN, D360_KEY, APP_SECRET, callback_delay=0.01)
    sandbox.webhook_url = f"{base}/{tag}/meta"
    sandbox.d360_webhook_url = f"{base}/{tag}/d360"
    sandbox.d360_webhook_headers = {"X-Webhook-Secret": "d360-hook-secret"}
    with ServerThread(sandbox.app) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5.0) as client:
            yield Env(sandbox, receiver, client, base, tag)


async def settled(env: Env, path: str, count: int) -> list[Received]:
    await eventually(lambda: env.sandbox.webhooks_pending == 0)
    await eventually(lambda: len(env.receiver.on(path)) >= count)
    return env.receiver.on(path)


async def test_meta_text_send_answers_like_the_cloud_api(env: Env) -> None:
    response = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    assert response.status_code == 200
    data = response.json()
    assert data["messaging_product"] == "whatsapp"
    assert data["contacts"] == [{"input": "+33 6 12 34 56 78", "wa_id": "33612345678"}]
    assert data["messages"][0]["id"].startswith("wamid.")
    sent = env.sandbox.sent[0]
    assert sent.path == SEND_PATH
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.body["text"] == {"body": "Hello"}
    assert sent.wamid == data["messages"][0]["id"]


async def test_status_webhooks_follow_in_order_signed_with_the_app_secret(env: Env) -> None:
    response = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    wamid = response.json()["messages"][0]["id"]

    hooks = await settled(env, env.path("meta"), 3)

    assert [h.statuses()[0]["status"] for h in hooks] == ["sent", "delivered", "read"]
    assert all(h.signature_valid(APP_SECRET) for h in hooks)
    envelope = hooks[0].json()
    assert envelope["object"] == "whatsapp_business_account"
    change = envelope["entry"][0]["changes"][0]
    assert change["field"] == "messages"
    assert change["value"]["metadata"]["phone_number_id"] == PHONE_ID
    status = hooks[0].statuses()[0]
    assert status["id"] == wamid
    assert status["recipient_id"] == "33612345678"
    assert status["timestamp"].isdigit()
    assert status["pricing"]["category"] == "service"


async def test_tampered_webhook_body_fails_the_signature(env: Env) -> None:
    await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    hook = (await settled(env, env.path("meta"), 3))[0]

    tampered = Received(hook.path, hook.headers, hook.raw.replace(b"sent", b"read"))
    reserialised = Received(hook.path, hook.headers, json.dumps(hook.json()).encode())

    assert hook.signature_valid(APP_SECRET)
    assert not tampered.signature_valid(APP_SECRET)
    assert not reserialised.signature_valid(APP_SECRET)
    assert not hook.signature_valid("another-secret")


async def test_template_send_is_accepted_and_billed(env: Env) -> None:
    body = {
        **TEXT,
        "type": "template",
        "template": {"name": "appointment_reminder", "language": {"code": "fr"}},
    }
    response = await env.client.post(SEND_PATH, json=body, headers=AUTH)

    assert response.status_code == 200
    assert response.json()["messages"][0]["message_status"] == "accepted"
    hooks = await settled(env, env.path("meta"), 3)
    assert hooks[0].statuses()[0]["pricing"]["billable"] is True


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 400, 104),
        ({"Authorization": "Bearer wrong"}, 401, 190),
        ({"Authorization": f"Basic {TOKEN}"}, 400, 104),
    ],
)
async def test_meta_rejects_missing_or_wrong_tokens(
    env: Env, headers: dict[str, str], status: int, code: int
) -> None:
    response = await env.client.post(SEND_PATH, json=text_body(), headers=headers)

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]
    assert env.sandbox.sent == []


@pytest.mark.parametrize(
    "body",
    [
        {"to": "33612345678", "type": "text", "text": {"body": "x"}},
        {"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}},
        {**TEXT},
        {**TEXT, "text": {"body": ""}},
        {**TEXT, "type": "image", "image": {"link": "https://example.com/a.png"}},
        {**TEXT, "type": "template", "template": {"name": "x"}},
    ],
)
async def test_meta_rejects_invalid_bodies_with_code_100(env: Env, body: dict[str, Any]) -> None:
    response = await env.client.post(SEND_PATH, json=body, headers=AUTH)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"]


async def test_meta_rejects_non_json_body(env: Env) -> None:
    response = await env.client.post(SEND_PATH, content=b"not json", headers=AUTH)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("130429", 400, 130429), ("190", 401, 190), ("500", 500, 131000)],
)
async def test_synchronous_faults_fail_the_next_sends_only(
    env: Env, kind: str, status: int, code: int
) -> None:
    env.sandbox.add_fault(kind, count=2)

    first = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    second = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    third = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    assert [first.status_code, second.status_code, third.status_code] == [status, status, 200]
    assert first.json()["error"]["code"] == code
    assert len(env.sandbox.sent) == 1


@pytest.mark.parametrize("kind", ["131047", "131026"])
async def test_window_and_undeliverable_faults_arrive_as_failed_status(env: Env, kind: str) -> None:
    env.sandbox.add_fault(kind)

    response = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    assert response.status_code == 200
    hooks = await settled(env, env.path("meta"), 1)
    assert len(hooks) == 1
    status = hooks[0].statuses()[0]
    assert status["status"] == "failed"
    assert status["id"] == response.json()["messages"][0]["id"]
    error = status["errors"][0]
    assert error["code"] == int(kind)
    assert error["title"] and error["message"] and error["error_data"]["details"]
    assert hooks[0].signature_valid(APP_SECRET)


async def test_hang_delays_the_answer_but_creates_the_message(env: Env) -> None:
    env.sandbox.add_fault("hang")

    with pytest.raises(httpx.ReadTimeout):
        await env.client.post(SEND_PATH, json=text_body(), headers=AUTH, timeout=0.3)

    assert len(env.sandbox.sent) == 1
    hooks = await settled(env, env.path("meta"), 3)
    assert hooks[0].statuses()[0]["id"] == env.sandbox.sent[0].wamid
    follow_up = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    assert follow_up.status_code == 200


async def test_hang_answers_after_hang_seconds(env: Env) -> None:
    env.sandbox.hang_seconds = 0.1
    env.sandbox.add_fault("hang")

    response = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    assert response.status_code == 200
    assert response.json()["messages"][0]["id"] == env.sandbox.sent[0].wamid


async def test_reorder_sends_statuses_backwards(env: Env) -> None:
    env.sandbox.reorder = True
    await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    hooks = await settled(env, env.path("meta"), 3)

    assert [h.statuses()[0]["status"] for h in hooks] == ["read", "delivered", "sent"]


async def test_duplicate_sends_every_status_twice(env: Env) -> None:
    env.sandbox.duplicate = True
    await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    hooks = await settled(env, env.path("meta"), 6)

    statuses = [h.statuses()[0]["status"] for h in hooks]
    assert statuses == ["sent", "sent", "delivered", "delivered", "read", "read"]
    assert hooks[0].raw == hooks[1].raw


async def test_360dialog_send_uses_its_key_and_registration_headers(env: Env) -> None:
    response = await env.client.post(
        "/messages", json=text_body(), headers={"D360-API-KEY": D360_KEY}
    )

    assert response.status_code == 200
    assert response.json()["messages"][0]["id"].startswith("wamid.")
    assert env.sandbox.sent[0].provider == "360dialog"
    assert env.sandbox.sent[0].headers["d360-api-key"] == D360_KEY
    hooks = await settled(env, env.path("d360"), 3)
    assert [h.statuses()[0]["status"] for h in hooks] == ["sent", "delivered", "read"]
    assert all(h.headers["x-webhook-secret"] == "d360-hook-secret" for h in hooks)
    assert "x-hub-signature-256" not in hooks[0].headers
    assert env.receiver.on(env.path("meta")) == []


async def test_360dialog_rejects_a_wrong_key_in_its_own_shape(env: Env) -> None:
    response = await env.client.post("/messages", json=text_body(), headers={"D360-API-KEY": "x"})

    assert response.status_code == 401
    meta = response.json()["meta"]
    assert meta["success"] is False
    assert meta["http_code"] == 401
    assert meta["developer_message"] == "Invalid api_key"


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("500", 500, lambda d: d["meta"]["http_code"] == 500),
        ("190", 401, lambda d: d["meta"]["developer_message"] == "Invalid api_key"),
        ("130429", 400, lambda d: d["error"]["code"] == 130429),
    ],
)
async def test_360dialog_faults(
    env: Env, kind: str, status: int, check: Callable[[Any], bool]
) -> None:
    env.sandbox.add_fault(kind)

    response = await env.client.post(
        "/messages", json=text_body(), headers={"D360-API-KEY": D360_KEY}
    )

    assert response.status_code == status
    assert check(response.json())


async def test_360dialog_window_fault_is_a_failed_status(env: Env) -> None:
    env.sandbox.add_fault("131047")

    await env.client.post("/messages", json=text_body(), headers={"D360-API-KEY": D360_KEY})

    hooks = await settled(env, env.path("d360"), 1)
    assert hooks[0].statuses()[0]["errors"][0]["code"] == 131047


async def test_inbound_message_is_signed_like_a_meta_webhook(env: Env) -> None:
    response = await env.sandbox.send_inbound_message("33612345678", "Bonjour / é", PHONE_ID)

    assert response.status_code == 200
    hook = env.receiver.on(env.path("meta"))[0]
    assert hook.signature_valid(APP_SECRET)
    assert b"\\/" in hook.raw and b"\\u00e9" in hook.raw
    value = hook.json()["entry"][0]["changes"][0]["value"]
    assert value["metadata"]["phone_number_id"] == PHONE_ID
    assert value["contacts"][0]["wa_id"] == "33612345678"
    message = value["messages"][0]
    assert message["from"] == "33612345678"
    assert message["type"] == "text"
    assert message["text"]["body"] == "Bonjour / é"


async def test_inbound_message_for_360dialog_carries_the_registration_headers(env: Env) -> None:
    number = env.sandbox.d360_phone_number_id
    response = await env.sandbox.send_inbound_message(
        "33612345678", "Salut", number, provider="360dialog"
    )

    assert response.status_code == 200
    hook = env.receiver.on(env.path("d360"))[0]
    assert hook.headers["x-webhook-secret"] == "d360-hook-secret"
    assert hook.json()["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] == "Salut"


async def test_each_account_has_its_own_token_secret_and_webhook(env: Env) -> None:
    other = MetaAccount("other-token", "other-secret", env.url("other"))
    env.sandbox.add_account("999", other)

    wrong = await env.client.post("/v21.0/999/messages", json=text_body(), headers=AUTH)
    right = await env.client.post(
        "/v21.0/999/messages", json=text_body(), headers={"Authorization": "Bearer other-token"}
    )

    assert wrong.status_code == 401
    assert right.status_code == 200
    hooks = await settled(env, env.path("other"), 3)
    assert all(h.signature_valid("other-secret") for h in hooks)
    assert not hooks[0].signature_valid(APP_SECRET)


async def test_each_360dialog_key_has_its_own_number_and_webhook(env: Env) -> None:
    channel = D360Channel("key-2", "222", env.url("d360-b"), {"X-Webhook-Secret": "b"})
    env.sandbox.add_d360_channel(channel)

    response = await env.client.post(
        "/messages", json=text_body(), headers={"D360-API-KEY": "key-2"}
    )

    assert response.status_code == 200
    hooks = await settled(env, env.path("d360-b"), 3)
    assert all(h.headers["x-webhook-secret"] == "b" for h in hooks)
    assert (
        hooks[0].json()["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == "222"
    )
    assert env.receiver.on(env.path("d360")) == []


async def test_switches_can_be_set_over_http(env: Env) -> None:
    bad = await env.client.post("/_sandbox/config", json={"colour": "red"})
    ok = await env.client.post("/_sandbox/config", json={"reorder": True, "duplicate": True})

    assert bad.status_code == 400
    assert ok.json()["reorder"] is True
    await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    hooks = await settled(env, env.path("meta"), 6)
    assert [h.statuses()[0]["status"] for h in hooks][:2] == ["read", "read"]


async def test_a_dead_receiver_does_not_break_the_emulator(env: Env) -> None:
    env.sandbox.webhook_url = f"http://127.0.0.1:{free_port()}/gone"

    first = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    await eventually(lambda: env.sandbox.webhooks_pending == 0)
    second = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    assert first.status_code == second.status_code == 200
    assert env.sandbox.webhooks[0].error is not None
    assert env.sandbox.webhooks[0].status_code is None


async def test_control_endpoints(env: Env) -> None:
    bad = await env.client.post("/_sandbox/faults", json={"kind": "nope"})
    queued = await env.client.post("/_sandbox/faults", json={"kind": "500", "count": 1})
    failed = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    ok = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)
    listed = await env.client.get("/_sandbox/messages")

    assert bad.status_code == 400
    assert queued.json() == {"pending": ["500"]}
    assert failed.status_code == 500
    assert ok.status_code == 200
    messages = listed.json()["messages"]
    assert [m["wamid"] for m in messages] == [ok.json()["messages"][0]["id"]]
    assert messages[0]["body"]["to"] == TEXT["to"]

    reset = await env.client.post("/_sandbox/reset")
    assert reset.status_code == 200
    assert (await env.client.get("/_sandbox/messages")).json() == {"messages": []}


async def test_inbound_over_http(env: Env) -> None:
    response = await env.client.post(
        "/_sandbox/inbound", json={"from": "33611111111", "text": "hi", "phone_number_id": "1"}
    )

    assert response.json() == {"webhook_status": 200}
    assert env.receiver.on(env.path("meta"))[0].signature_valid(APP_SECRET)


def test_sign_meta_payload_is_hmac_sha256_of_the_raw_body() -> None:
    raw = meta_json_bytes({"url": "https://a/b", "text": "é"})

    assert raw == b'{"url":"https:\\/\\/a\\/b","text":"\\u00e9"}'
    expected = hmac.new(b"secret", raw, hashlib.sha256).hexdigest()
    assert sign_meta_payload(raw, "secret") == f"sha256={expected}"


def test_unknown_fault_kind_is_refused() -> None:
    sandbox = WhatsAppSandbox(TOKEN, D360_KEY, APP_SECRET)

    with pytest.raises(ValueError, match="unknown fault"):
        sandbox.add_fault("418")


async def test_settings_are_at_the_documented_path_and_typed(env: Env) -> None:
    mistyped = [
        await env.client.post(path, json={"callback_delay": "soon"})
        for path in ("/_sandbox/settings", "/_sandbox/config")
    ]
    applied = await env.client.post(
        "/_sandbox/settings", json={"callback_delay": 0.01, "webhook_url": None}
    )
    sent = await env.client.post(SEND_PATH, json=text_body(), headers=AUTH)

    assert [r.status_code for r in mistyped] == [400, 400]
    assert applied.status_code == 200
    shown = (await env.client.get("/_sandbox/settings")).json()
    assert (shown["callback_delay"], shown["webhook_url"]) == (0.01, None)
    assert sent.status_code == 200
