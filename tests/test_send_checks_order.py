"""A send's database checks run in the insert's own transaction (one trip); what a client
sees stays as before: a replay of an accepted request is answered first, then the channel's
state, then a suppressed recipient, then the content (template)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import Settings
from gateway.store.engine import Connection
from gateway.store.messages import add_suppression
from tests.conftest import TWILIO, Api, running_api

CLIENT = "+33612345678"
SEND = "/api/channels/sms/send"


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def sms_tenant(api: Api) -> tuple[dict[str, Any], dict[str, str]]:
    tenant, key = await api.create_tenant("acme")
    toggled = await api.client.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert toggled.status_code == 200, toggled.text
    return tenant, key


async def suppress(api: Api, tenant_id: str, address: str) -> None:
    def write(conn: Connection) -> None:
        add_suppression(conn, tenant_id, "sms", address, "stop_keyword", "STOP received")

    await api.gateway.db.write_fn(write)


async def test_a_replay_is_answered_after_the_channel_was_disabled(api: Api) -> None:
    _, key = await sms_tenant(api)
    headers = {**key, "Idempotency-Key": "order-1"}
    first = await api.client.post(SEND, json={"to": CLIENT, "body": "Hi"}, headers=headers)
    assert first.status_code == 202
    await api.client.post("/api/channels/sms/toggle", json={"enabled": False}, headers=key)

    again = await api.client.post(SEND, json={"to": CLIENT, "body": "Hi"}, headers=headers)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    fresh = await api.client.post(
        SEND, json={"to": CLIENT, "body": "Hi"}, headers={**key, "Idempotency-Key": "order-2"}
    )
    assert fresh.json()["error"]["code"] == "channel_disabled"


async def test_a_replay_is_answered_after_the_recipient_was_suppressed(api: Api) -> None:
    tenant, key = await sms_tenant(api)
    headers = {**key, "Idempotency-Key": "order-3"}
    first = await api.client.post(SEND, json={"to": CLIENT, "body": "Hi"}, headers=headers)
    assert first.status_code == 202
    await suppress(api, tenant["id"], CLIENT)

    again = await api.client.post(SEND, json={"to": CLIENT, "body": "Hi"}, headers=headers)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_suppressed_recipient_is_409_and_nothing_is_written(api: Api) -> None:
    tenant, key = await sms_tenant(api)
    await suppress(api, tenant["id"], CLIENT)

    refused = await api.client.post(SEND, json={"to": CLIENT, "body": "Hi"}, headers=key)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "recipient_suppressed"
    assert error["details"]["reason"] == "stop_keyword"
    listed = await api.client.get("/api/messages", headers=key)
    assert listed.json()["messages"] == []


async def test_suppression_is_refused_before_a_missing_template(api: Api) -> None:
    tenant, key = await sms_tenant(api)
    await suppress(api, tenant["id"], CLIENT)

    refused = await api.client.post(SEND, json={"to": CLIENT, "template": "nope"}, headers=key)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "recipient_suppressed"
