"""The send path keeps API keys and channel states in memory for a moment
(`gateway.services.config_cache`): a change made through the gateway takes effect on the
next request of that instance, and on the other instances of a PostgreSQL database within
a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import Settings
from tests.conftest import TWILIO, Api, running_api

CLIENT = "+33612345678"
SEND = "/api/channels/sms/send"
SMS_CONFIG = "/api/channels/sms/config"


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def sms_tenant(api: Api, slug: str = "acme") -> tuple[dict[str, Any], dict[str, str]]:
    tenant, key = await api.create_tenant(slug)
    toggled = await api.client.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert toggled.status_code == 200, toggled.text
    return tenant, key


async def send(api: Api, key: dict[str, str], **body: Any) -> Any:
    return await api.client.post(SEND, json={"to": CLIENT, "body": "Hi", **body}, headers=key)


async def test_a_revoked_key_is_refused_on_the_next_request(api: Api) -> None:
    tenant, key = await sms_tenant(api)
    assert (await send(api, key)).status_code == 202
    keys = await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)
    [listed] = keys.json()["api_keys"]
    revoked = await api.client.delete(
        f"/admin/tenants/{tenant['id']}/api-keys/{listed['id']}", headers=api.admin
    )
    assert revoked.status_code == 204, revoked.text

    refused = await send(api, key)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unknown_api_key"


async def test_a_suspended_tenant_cannot_send_on_the_next_request(api: Api) -> None:
    tenant, key = await sms_tenant(api)
    assert (await send(api, key)).status_code == 202
    suspended = await api.client.patch(
        f"/admin/tenants/{tenant['id']}", json={"status": "suspended"}, headers=api.admin
    )
    assert suspended.status_code == 200, suspended.text

    refused = await send(api, key)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_suspended"

    await api.client.patch(
        f"/admin/tenants/{tenant['id']}", json={"status": "active"}, headers=api.admin
    )
    assert (await send(api, key)).status_code == 202


async def test_a_disabled_channel_refuses_the_next_send(api: Api) -> None:
    _, key = await sms_tenant(api)
    assert (await send(api, key)).status_code == 202
    off = await api.client.post("/api/channels/sms/toggle", json={"enabled": False}, headers=key)
    assert off.status_code == 200, off.text

    refused = await send(api, key)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "channel_disabled"


async def test_a_changed_template_is_used_by_the_next_send(api: Api) -> None:
    _, key = await sms_tenant(api)
    first = await api.client.put(SMS_CONFIG, json={"templates": {"hello": "Bonjour"}}, headers=key)
    assert first.status_code == 200, first.text
    sent = await send(api, key, body=None, template="hello")
    assert sent.status_code == 202, sent.text
    assert sent.json()["body"] == "Bonjour"

    changed = await api.client.put(SMS_CONFIG, json={"templates": {"hello": "Salut"}}, headers=key)
    assert changed.status_code == 200, changed.text
    again = await send(api, key, body=None, template="hello")
    assert again.json()["body"] == "Salut"


async def test_a_new_key_works_at_once(api: Api) -> None:
    tenant, key = await sms_tenant(api)
    assert (await send(api, key)).status_code == 202
    issued = await api.client.post(
        f"/admin/tenants/{tenant['id']}/api-keys", json={"label": "second"}, headers=api.admin
    )
    assert issued.status_code == 201, issued.text
    second = {"Authorization": f"Bearer {issued.json()['key']}"}
    assert (await send(api, second)).status_code == 202


# -- two instances on one PostgreSQL database ---------------------------------------------


@pytest.fixture
async def two(
    make_settings: Callable[..., Settings], postgres_url: str
) -> AsyncIterator[tuple[Api, Api]]:
    settings = make_settings(**TWILIO, DATABASE_URL=postgres_url)
    async with running_api(settings) as first, running_api(settings) as second:
        yield first, second


async def within_a_second(check: Callable[[], Any]) -> float:
    """Seconds until `check()` is true; fails when it is not after one second."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        assert time.monotonic() - started < 1.0, "not seen by the other instance in a second"
        await asyncio.sleep(0.02)


async def test_a_key_revoked_on_one_instance_stops_on_the_other_within_a_second(
    two: tuple[Api, Api],
) -> None:
    first, second = two
    tenant, key = await sms_tenant(first)
    assert (await send(second, key)).status_code == 202  # the other instance holds it now
    keys = await first.client.get(f"/admin/tenants/{tenant['id']}", headers=first.admin)
    [listed] = keys.json()["api_keys"]
    revoked = await first.client.delete(
        f"/admin/tenants/{tenant['id']}/api-keys/{listed['id']}", headers=first.admin
    )
    assert revoked.status_code == 204, revoked.text

    async def refused() -> bool:
        return (await send(second, key)).status_code == 401

    await within_a_second(refused)


async def test_a_channel_disabled_on_one_instance_refuses_on_the_other_within_a_second(
    two: tuple[Api, Api],
) -> None:
    first, second = two
    _, key = await sms_tenant(first)
    assert (await send(second, key)).status_code == 202
    off = await first.client.post("/api/channels/sms/toggle", json={"enabled": False}, headers=key)
    assert off.status_code == 200, off.text

    async def refused() -> bool:
        answer = await send(second, key)
        return bool(
            answer.status_code == 409 and answer.json()["error"]["code"] == "channel_disabled"
        )

    await within_a_second(refused)
