"""Tenant isolation and secret hygiene across every tenant endpoint."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import pytest

from gateway.logs import JsonFormatter
from gateway.sandbox.server import free_port
from tests.conftest import Api
from tests.test_channels_api import EMAIL, WHATSAPP

SECRETS = [
    EMAIL["password"],
    WHATSAPP["access_token"],
    WHATSAPP["app_secret"],
    WHATSAPP["verify_token"],
]

# For each path parameter naming a tenant-owned object: how to create one for a tenant.
# A new tenant endpoint with an object id must add its factory here, or the test fails.
ObjectFactory = Callable[[Api, dict[str, str]], Awaitable[str]]


async def a_message(api: Api, key: dict[str, str]) -> str:
    await api.client.post("/api/channels/email/toggle", json={"enabled": True}, headers=key)
    response = await api.client.post(
        "/api/channels/email/send",
        json={"to": "client-of-a@example.org", "subject": "Private to A", "text": "A's secret"},
        headers=key,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def a_free_slot(api: Api, key: dict[str, str]) -> str:
    """The first slot the tenant's diary offers a week from now."""
    day = date.today() + timedelta(days=7)  # clear of the notice, inside the horizon
    free = await api.client.get(
        "/api/availability",
        params={"start": day.isoformat(), "end": (day + timedelta(days=6)).isoformat()},
        headers=key,
    )
    return str(next(s for d in free.json()["days"] for s in d["slots"]))


async def an_appointment(api: Api, key: dict[str, str]) -> str:
    start = await a_free_slot(api, key)
    response = await api.client.post(
        "/api/appointments",
        json={"customer_name": "Client of A", "customer_phone": "+33612345678", "starts_at": start},
        headers=key,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


OBJECT_FACTORIES: dict[str, ObjectFactory] = {
    "message_id": a_message,
    "appointment_id": an_appointment,
}
# a contact is not an object of one tenant: erasing it touches only the caller's rows
# (tests/test_erasure.py, test_another_tenant_keeps_the_same_person)
NON_OBJECT_PARAMS = {"channel_type", "contact"}


async def configure_everything(api: Api, key: dict[str, str]) -> None:
    for channel, body in (("email", EMAIL), ("whatsapp", WHATSAPP)):
        response = await api.client.post(f"/api/channels/{channel}/config", json=body, headers=key)
        assert response.status_code == 200
    await api.client.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": ["+33612345678"], "greeting": "Bonjour A"},
        headers=key,
    )
    await api.client.put(
        "/api/channels/sms/config", json={"templates": {"rappel": "Rappel de A"}}, headers=key
    )


def sample_body(path: str, method: str) -> Any:
    if path.endswith("/toggle"):
        return {"enabled": False}
    if path == "/api/channels/test":
        return {"channel": "email", "to": "client@example.org"}
    if method in ("POST", "PUT", "PATCH"):
        return {}
    return None


async def test_tenant_b_never_sees_tenant_a(api: Api) -> None:
    _, key_a = await api.create_tenant("tenant-a")
    _, key_b = await api.create_tenant("tenant-b")
    await configure_everything(api, key_a)
    a_objects = {name: await factory(api, key_a) for name, factory in OBJECT_FACTORIES.items()}
    a_markers = [
        *SECRETS,
        "smtp.example.com",
        "Bonjour A",
        "Rappel de A",
        "+33612345678",
        "106540352242922",
        "client-of-a@example.org",
        "A's secret",
        "Client of A",
    ]

    tenant_endpoints = [ep for ep in api.app.state.endpoints if ep.auth == "tenant"]
    assert tenant_endpoints
    for ep in tenant_endpoints:
        params = re.findall(r"{(\w+)}", ep.path)
        unknown = set(params) - NON_OBJECT_PARAMS - set(OBJECT_FACTORIES)
        assert not unknown, f"{ep.path}: add an object factory for {unknown}"
        channels = ["phone", "sms", "email", "whatsapp"] if "channel_type" in params else [None]
        for channel in channels:
            path = ep.path
            if channel:
                path = path.replace("{channel_type}", channel)
            for name, object_id in a_objects.items():
                path = path.replace("{" + name + "}", object_id)
            body = sample_body(ep.path, ep.method)
            response = await api.client.request(ep.method, path, json=body, headers=key_b)
            if set(params) - NON_OBJECT_PARAMS:
                assert response.status_code == 404, f"{ep.method} {path}"
            for marker in a_markers:
                assert marker not in response.text, f"{ep.method} {path} leaked {marker!r}"


async def test_no_secret_in_any_response_or_log_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        tenant, key = await api.create_tenant("acme")
        await configure_everything(api, key)
        responses = [
            await api.client.get("/api/channels", headers=key),
            await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin),
            *[
                await api.client.get(f"/api/channels/{c}/config", headers=key)
                for c in ("phone", "sms", "email", "whatsapp")
            ],
            await api.client.put("/api/channels/email/config", json={"port": "bad"}, headers=key),
            await api.client.put(
                "/api/channels/email/config",
                json={"password": EMAIL["password"], "port": "bad"},
                headers=key,
            ),
            # a loopback host: refused at save time (422), nothing reaches the network
            await api.client.put(
                "/api/channels/email/config",
                json={"host": "localhost", "port": free_port()},
                headers=key,
            ),
            await api.client.post(
                "/api/channels/test", json={"channel": "email", "to": "x@example.org"}, headers=key
            ),
            await api.client.get("/openapi.json"),
        ]
    formatter = JsonFormatter()
    log_text = "\n".join(formatter.format(r) for r in caplog.records)
    assert "gateway.access" in log_text
    for secret in SECRETS:
        assert secret not in log_text
        for response in responses:
            assert secret not in response.text
