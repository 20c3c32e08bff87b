"""The send endpoints' contract, in-process, with the dispatcher off: validation, idempotency,
rate limits, templates, suppressions, reading back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import Settings
from tests.conftest import TWILIO, Api, running_api, start_api
from tests.stack import ACCOUNT_SID, AUTH_TOKEN

CLIENT = "+33612345678"


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def sms_tenant(api: Api, slug: str = "acme") -> dict[str, str]:
    _, key = await api.create_tenant(slug)
    await api.client.put(
        "/api/channels/sms/config",
        headers=key,
        json={"templates": {"rappel": "Bonjour {name}, rendez-vous le {date}."}},
    )
    response = await api.client.post(
        "/api/channels/sms/toggle", json={"enabled": True}, headers=key
    )
    assert response.status_code == 200
    return key


async def count_messages(api: Api) -> int:
    row = await api.gateway.db.fetchone("SELECT COUNT(*) AS n FROM channel_messages_log")
    return int(row["n"])


async def test_sms_accepted_with_encoding_segments_and_price(api: Api) -> None:
    key = await sms_tenant(api)
    response = await api.client.post(
        "/api/channels/sms/send",
        headers=key,
        json={
            "to": "+33 6 12 34 56 78",
            "body": "Rendez-vous confirmé 🎉 " + "x" * 60,
            "metadata": {"crm_id": 42},
            "call_id": "call_1",
            "agent": "sara",
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["to"] == CLIENT and body["from"] == "+33939035761"
    assert body["status"] == "queued"
    assert body["encoding"] == "UCS-2" and body["num_segments"] == 2
    assert body["billed_cost"] == 0.14
    assert body["metadata"] == {"crm_id": 42} and body["call_id"] == "call_1"
    stored = await api.client.get(f"/api/messages/{body['id']}", headers=key)
    assert stored.json()["events"][0]["status"] == "queued"


async def test_operator_price_per_segment_is_billed(api: Api) -> None:
    key = await sms_tenant(api)
    tenant = (await api.client.get("/admin/tenants", headers=api.admin)).json()["tenants"][0]
    await api.client.put(
        f"/admin/tenants/{tenant['id']}/channels/sms/config",
        json={"price_per_segment": 0.1234},
        headers=api.admin,
    )
    response = await api.client.post(
        "/api/channels/sms/send", headers=key, json={"to": CLIENT, "body": "a" * 161}
    )
    assert response.json()["billed_cost"] == 0.2468


async def test_template_rendering_and_missing_variables(api: Api) -> None:
    key = await sms_tenant(api)
    ok = await api.client.post(
        "/api/channels/sms/send",
        headers=key,
        json={"to": CLIENT, "template": "rappel", "variables": {"name": "Léa", "date": "3 mars"}},
    )
    assert ok.status_code == 202
    assert ok.json()["body"] == "Bonjour Léa, rendez-vous le 3 mars."
    missing = await api.client.post(
        "/api/channels/sms/send",
        headers=key,
        json={"to": CLIENT, "template": "rappel", "variables": {"name": "Léa"}},
    )
    assert missing.status_code == 422
    assert missing.json()["error"]["details"]["fields"] == [
        {"field": "variables.date", "message": "is used by the template but not given"}
    ]
    unknown = await api.client.post(
        "/api/channels/sms/send", headers=key, json={"to": CLIENT, "template": "nope"}
    )
    assert unknown.status_code == 422
    assert await count_messages(api) == 1


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("sms", {"to": "06 12", "body": "hi"}, ["to"]),
        ("sms", {"to": CLIENT}, ["body"]),
        ("sms", {"to": CLIENT, "body": "hi", "template": "rappel"}, ["body"]),
        ("sms", {"to": CLIENT, "body": "x" * 1601}, ["body"]),
        ("sms", {"to": CLIENT, "body": ""}, ["body"]),
        ("sms", {"to": CLIENT, "body": "hi", "message_type": "spam"}, ["message_type"]),
        ("sms", {"to": CLIENT, "body": "hi", "send_at": "2030-01-01T10:00:00"}, ["send_at"]),
        ("sms", {"to": CLIENT, "body": "hi", "metadata": {"x": "y" * 5000}}, ["metadata"]),
        ("sms", {"to": CLIENT, "body": "hi", "priority": 1}, ["priority"]),
        ("email", {"to": "nobody", "subject": "s", "text": "t"}, ["to"]),
        ("email", {"to": "a@example.com", "subject": "s\r\nBcc: x@y.z", "text": "t"}, ["subject"]),
        ("email", {"to": "a@example.com", "subject": "s"}, ["body"]),
        ("whatsapp", {"to": CLIENT, "text": "x" * 4097}, ["text"]),
        ("whatsapp", {"to": CLIENT}, ["body"]),
    ],
)
async def test_send_bad_inputs_are_422_and_nothing_is_written(
    api: Api, path: str, body: dict[str, Any], fields: list[str]
) -> None:
    key = await sms_tenant(api)
    response = await api.client.post(f"/api/channels/{path}/send", json=body, headers=key)
    assert response.status_code == 422, response.text
    got = [f["field"] for f in response.json()["error"]["details"]["fields"]]
    assert got == fields
    assert await count_messages(api) == 0


async def test_send_malformed_and_wrong_type(api: Api) -> None:
    key = await sms_tenant(api)
    bad_json = await api.client.post(
        "/api/channels/sms/send", content=b"{", headers={**key, "content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    form = await api.client.post("/api/channels/sms/send", data={"to": CLIENT}, headers=key)
    assert form.status_code == 415
    assert await count_messages(api) == 0


async def test_disabled_or_unconfigured_channel_is_409(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    sms = await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
    )
    assert sms.status_code == 409 and sms.json()["error"]["code"] == "channel_disabled"
    email = await api.client.post(
        "/api/channels/email/send",
        headers=key,
        json={"to": "a@example.com", "subject": "s", "text": "t"},
    )
    assert email.status_code == 409
    assert email.json()["error"]["code"] == "channel_not_configured"
    assert email.json()["error"]["details"]["missing"] == ["host", "from_email"]
    assert await count_messages(api) == 0


async def test_idempotency_key_replays_or_conflicts(api: Api) -> None:
    key = await sms_tenant(api)
    headers = {**key, "Idempotency-Key": "order-42-confirmation"}
    first = await api.client.post(
        "/api/channels/sms/send",
        headers=headers,
        json={"to": CLIENT, "body": "Commande 42 confirmée"},
    )
    again = await api.client.post(
        "/api/channels/sms/send",
        headers=headers,
        json={"to": CLIENT, "body": "Commande 42 confirmée"},
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await api.client.post(
        "/api/channels/sms/send", headers=headers, json={"to": CLIENT, "body": "something else"}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    bad = await api.client.post(
        "/api/channels/sms/send",
        json={"to": CLIENT, "body": "x"},
        headers={**key, "Idempotency-Key": "has space"},
    )
    assert bad.status_code == 422
    assert await count_messages(api) == 1
    # keys are per tenant
    other_tenant = await sms_tenant(api, "other")
    theirs = await api.client.post(
        "/api/channels/sms/send",
        headers={**other_tenant, "Idempotency-Key": "order-42-confirmation"},
        json={"to": CLIENT, "body": "different tenant"},
    )
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


async def test_rate_limit_answers_429_with_retry_after(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    toml = tmp_path / "limited.toml"
    toml.write_text(
        '[[ratelimits]]\nname = "SEND_RATE_LIMITER"\nnamespace_id = "1"\n'
        "simple = { limit = 3, period = 60 }\n"
    )
    from gateway.config import load_settings
    from tests.conftest import ADMIN_KEY, KEY_A

    settings = load_settings(
        toml,
        environ={
            "ADMIN_API_KEY": ADMIN_KEY,
            "ENCRYPTION_KEYS": f"k1:{KEY_A}",
            "DATABASE_PATH": str(tmp_path / "db.sqlite3"),
            "DISPATCHER": "off",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": "+33939035761",
        },
    )
    app, client = await start_api(settings)
    try:
        api = Api(app, client)
        key = await sms_tenant(api)
        other = await sms_tenant(api, "other")
        statuses = [
            (
                await client.post(
                    "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
                )
            ).status_code
            for _ in range(4)
        ]
        assert statuses == [202, 202, 202, 429]
        limited = await client.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "x"}, headers=key
        )
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        assert await count_messages(api) == 3
        ok = await client.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=other
        )
        assert ok.status_code == 202, "each tenant has its own budget"
    finally:
        await client.aclose()
        await app.state.gateway.stop()


async def test_listing_filters_and_pagination(api: Api) -> None:
    key = await sms_tenant(api)
    for i in range(5):
        await api.client.post(
            "/api/channels/sms/send",
            headers=key,
            json={
                "to": CLIENT if i % 2 else "+33698765432",
                "body": f"message {i}",
                "message_type": "marketing" if i == 4 else "transactional",
            },
        )
    page = (await api.client.get("/api/messages?limit=2", headers=key)).json()
    assert [m["body"] for m in page["messages"]] == ["message 4", "message 3"]
    rest = (
        await api.client.get(f"/api/messages?limit=10&cursor={page['next_cursor']}", headers=key)
    ).json()
    assert [m["body"] for m in rest["messages"]] == ["message 2", "message 1", "message 0"]
    assert rest["next_cursor"] is None
    to = (await api.client.get("/api/messages?to=%2B33612345678", headers=key)).json()
    assert {m["body"] for m in to["messages"]} == {"message 1", "message 3"}
    marketing = (await api.client.get("/api/messages?message_type=marketing", headers=key)).json()
    assert [m["body"] for m in marketing["messages"]] == ["message 4"]
    later = (await api.client.get("/api/messages?since=2999-01-01T00:00:00Z", headers=key)).json()
    assert later["messages"] == []
    bad = await api.client.get("/api/messages?status=lost", headers=key)
    assert bad.status_code == 422


async def test_another_tenants_message_is_404(api: Api) -> None:
    key_a = await sms_tenant(api, "tenant-a")
    key_b = await sms_tenant(api, "tenant-b")
    sent = await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": "A's"}, headers=key_a
    )
    response = await api.client.get(f"/api/messages/{sent.json()['id']}", headers=key_b)
    assert response.status_code == 404
    listing = (await api.client.get("/api/messages", headers=key_b)).json()
    assert listing["messages"] == []


async def test_metrics_expose_counts_without_secrets(api: Api) -> None:
    key = await sms_tenant(api)
    await api.client.post("/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key)
    text = (await api.client.get("/metrics")).text
    assert 'gateway_messages_accepted_total{channel="sms"} 1.0' in text
    assert "gateway_dispatch_queue_depth" in text
    assert "gateway_provider_call_seconds" in text
    assert CLIENT not in text and AUTH_TOKEN not in text and "cgw_" not in text
