from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from gateway.config import Settings
from gateway.sandbox.smtp_server import SmtpSandbox
from tests.conftest import Api, start_api

EMAIL = {
    "host": "smtp.example.com",
    "port": 587,
    "security": "starttls",
    "username": "agent@example.com",
    "password": "app-password-1234abcd",
    "from_email": "agent@example.com",
    "from_name": "Sara (Acme)",
    "reply_to": "contact@example.com",
}
WHATSAPP = {
    "provider": "meta_cloud",
    "phone_number_id": "106540352242922",
    "business_account_id": "102290129340398",
    "access_token": "EAAG-very-long-access-token-9876",
    "app_secret": "app-secret-0123456789",
    "verify_token": "verify-token-abcdef",
}


async def test_channel_list_shows_state_and_what_is_missing(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.get("/api/channels", headers=key)
    channels = {c["channel"]: c for c in response.json()["channels"]}
    assert set(channels) == {"phone", "sms", "email", "whatsapp"}
    assert channels["email"]["configured"] is False
    assert channels["email"]["missing"] == ["host", "from_email"]


async def test_email_config_round_trip_masks_the_password(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.post("/api/channels/email/config", json=EMAIL, headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["configured"] is True
    assert body["settings"]["host"] == "smtp.example.com"
    assert "password" not in body["settings"]
    assert body["secrets"]["password"] == {"set": True, "last4": "abcd"}
    assert EMAIL["password"] not in response.text
    again = await api.client.get("/api/channels/email/config", headers=key)
    assert again.json()["settings"] == body["settings"]
    assert EMAIL["password"] not in again.text


async def test_secret_is_encrypted_at_rest(api: Api) -> None:
    tenant, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/email/config", json=EMAIL, headers=key)
    row = await api.gateway.db.fetchone(
        "SELECT settings, config_encrypted, key_id FROM channel_configurations "
        "WHERE tenant_id = ? AND channel_type = 'email'",
        (tenant["id"],),
    )
    assert row["config_encrypted"].startswith("v1:k1:")
    assert row["key_id"] == "k1"
    assert EMAIL["password"] not in row["settings"]
    assert EMAIL["password"] not in row["config_encrypted"]


async def test_put_is_a_merge_patch_that_keeps_omitted_secrets(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/email/config", json=EMAIL, headers=key)
    response = await api.client.put(
        "/api/channels/email/config", json={"port": 2525, "reply_to": None}, headers=key
    )
    assert response.status_code == 200
    body = response.json()
    assert body["settings"]["port"] == 2525
    assert body["settings"]["reply_to"] is None
    assert body["settings"]["host"] == "smtp.example.com"
    assert body["secrets"]["password"]["set"] is True

    new = await api.client.put(
        "/api/channels/email/config", json={"password": "rotated-password-zz99"}, headers=key
    )
    assert new.json()["secrets"]["password"]["last4"] == "zz99"
    cleared = await api.client.put(
        "/api/channels/email/config", json={"password": None, "username": None}, headers=key
    )
    assert cleared.json()["secrets"]["password"] == {"set": False}


async def test_post_replaces_everything_including_secrets(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/email/config", json=EMAIL, headers=key)
    response = await api.client.post(
        "/api/channels/email/config",
        json={"host": "mail.other.org", "from_email": "a@other.org"},
        headers=key,
    )
    body = response.json()
    assert body["settings"]["host"] == "mail.other.org"
    assert body["settings"]["username"] is None
    assert body["secrets"]["password"] == {"set": False}


async def test_short_secrets_show_no_characters(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    await api.client.post(
        "/api/channels/email/config", json={**EMAIL, "password": "tiny"}, headers=key
    )
    view = (await api.client.get("/api/channels/email/config", headers=key)).json()
    assert view["secrets"]["password"] == {"set": True, "last4": None}


@pytest.mark.parametrize(
    ("channel", "body", "fields"),
    [
        ("email", {"host": "bad host!", "from_email": "x@y.com"}, ["host"]),
        ("email", {"from_email": "not-an-email"}, ["from_email"]),
        ("email", {"from_name": "Evil\r\nBcc: all@x.com"}, ["from_name"]),
        ("email", {"security": "ssl"}, ["security"]),
        ("email", {"port": 70000}, ["port"]),
        ("email", {"password": "pass\x00word"}, ["password"]),
        ("email", {"smtp_host": "x"}, ["smtp_host"]),
        ("sms", {"templates": {"bad name!": "hi"}}, ["templates.bad name!.[key]"]),
        ("sms", {"templates": {"t": "x" * 1601}}, ["templates.t"]),
        ("sms", {"default_message_type": "spam"}, ["default_message_type"]),
        ("sms", {"price_per_segment": 0.01}, ["price_per_segment"]),
        ("sms", {"sender": "+33612345678"}, ["sender"]),
        ("whatsapp", {"provider": "telegram"}, ["provider"]),
        ("whatsapp", {"phone_number_id": "abc"}, ["phone_number_id"]),
        ("phone", {"forwarding_numbers": ["06 12"]}, ["forwarding_numbers.0"]),
        (
            "phone",
            {"forwarding_numbers": ["+33612345678", "+33 6 12 34 56 78"]},
            ["forwarding_numbers"],
        ),
        ("phone", {"fallback_number": "+1555"}, ["fallback_number"]),
        ("phone", {"booking": {"slot_minutes": 1}}, ["booking.slot_minutes"]),
        ("phone", {"booking": {"timezone": "Nowhere/City"}}, ["booking.timezone"]),
        (
            "phone",
            {"booking": {"opening_hours": {"mon": [{"open": "18:00", "close": "09:00"}]}}},
            ["booking.opening_hours.mon.0"],
        ),
        (
            "phone",
            {"booking": {"opening_hours": {"funday": []}}},
            ["booking.opening_hours.funday.[key]"],
        ),
        ("phone", {"vapi_assistant_id": "asst_1"}, ["vapi_assistant_id"]),
    ],
)
async def test_invalid_settings_are_422_and_nothing_is_saved(
    api: Api, channel: str, body: dict[str, Any], fields: list[str]
) -> None:
    _, key = await api.create_tenant("acme")
    before = (await api.client.get(f"/api/channels/{channel}/config", headers=key)).json()
    for method in ("POST", "PUT"):
        response = await api.client.request(
            method, f"/api/channels/{channel}/config", json=body, headers=key
        )
        assert response.status_code == 422, response.text
        got = [f["field"] for f in response.json()["error"]["details"]["fields"]]
        assert got == fields
    after = (await api.client.get(f"/api/channels/{channel}/config", headers=key)).json()
    assert after == before


async def test_unknown_channel_is_404(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.get("/api/channels/fax/config", headers=key)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_channel"


async def test_enabling_an_incomplete_channel_is_409_listing_what_is_missing(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    await api.client.post(
        "/api/channels/whatsapp/config", json={"phone_number_id": "106540352242922"}, headers=key
    )
    response = await api.client.post(
        "/api/channels/whatsapp/toggle", json={"enabled": True}, headers=key
    )
    assert response.status_code == 409
    assert response.json()["error"]["details"]["missing"] == [
        "access_token",
        "app_secret",
        "verify_token",
    ]
    view = (await api.client.get("/api/channels/whatsapp/config", headers=key)).json()
    assert view["enabled"] is False


async def test_enable_disable_and_guard_against_losing_required_fields(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/whatsapp/config", json=WHATSAPP, headers=key)
    on = await api.client.post("/api/channels/whatsapp/toggle", json={"enabled": True}, headers=key)
    assert on.status_code == 200 and on.json()["enabled"] is True
    removing = await api.client.put(
        "/api/channels/whatsapp/config", json={"access_token": None}, headers=key
    )
    assert removing.status_code == 409
    assert removing.json()["error"]["code"] == "channel_enabled_incomplete"
    view = (await api.client.get("/api/channels/whatsapp/config", headers=key)).json()
    assert view["secrets"]["access_token"]["set"] is True
    off = await api.client.post(
        "/api/channels/whatsapp/toggle", json={"enabled": False}, headers=key
    )
    assert off.json()["enabled"] is False


@pytest.mark.parametrize(
    "body", [{"enabled": "yes"}, {}, {"enabled": 1}, {"enabled": True, "x": 1}]
)
async def test_toggle_bad_bodies(api: Api, body: dict[str, Any]) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.post("/api/channels/sms/toggle", json=body, headers=key)
    assert response.status_code == 422


async def test_operator_fields_are_set_by_the_operator_only(api: Api) -> None:
    tenant, key = await api.create_tenant("acme")
    response = await api.client.put(
        f"/admin/tenants/{tenant['id']}/channels/phone/config",
        json={
            "vapi_assistant_id": "asst_123",
            "vapi_phone_number_id": "pn_456",
            "dedicated_numbers": ["+33939035761"],
            "price_per_minute": 0.2,
        },
        headers=api.admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["operator_settings"]["vapi_assistant_id"] == "asst_123"
    # the tenant's own edits keep the operator's fields
    await api.client.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": ["+33612345678"], "greeting": "Bonjour"},
        headers=key,
    )
    view = (await api.client.get("/api/channels/phone/config", headers=key)).json()
    assert view["operator_settings"]["dedicated_numbers"] == ["+33939035761"]
    assert view["settings"]["forwarding_numbers"] == ["+33612345678"]
    assert view["settings"]["booking"]["slot_minutes"] == 30
    bad = await api.client.put(
        f"/admin/tenants/{tenant['id']}/channels/sms/config",
        json={"price_per_segment": -1},
        headers=api.admin,
    )
    assert bad.status_code == 422
    none = await api.client.put(
        f"/admin/tenants/{tenant['id']}/channels/email/config",
        json={"host": "x"},
        headers=api.admin,
    )
    assert none.status_code == 422


async def test_forwarding_number_belongs_to_one_tenant_only(api: Api) -> None:
    _, key_a = await api.create_tenant("tenant-a")
    _, key_b = await api.create_tenant("tenant-b")
    first = await api.client.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": ["+33 6 12 34 56 78"]},
        headers=key_a,
    )
    assert first.status_code == 200
    assert first.json()["settings"]["forwarding_numbers"] == ["+33612345678"]
    clash = await api.client.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": ["+33612345678", "+33698765432"]},
        headers=key_b,
    )
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "number_taken"
    b_view = (await api.client.get("/api/channels/phone/config", headers=key_b)).json()
    assert b_view["settings"]["forwarding_numbers"] == [], "nothing half-written"
    # once A lets the number go, B can take it
    await api.client.put(
        "/api/channels/phone/config", json={"forwarding_numbers": []}, headers=key_a
    )
    retry = await api.client.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": ["+33612345678"]},
        headers=key_b,
    )
    assert retry.status_code == 200


async def test_booking_settings_merge_per_day(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.put(
        "/api/channels/phone/config",
        json={
            "booking": {
                "opening_hours": {"sat": [{"open": "10:00", "close": "13:00"}], "mon": None},
                "capacity": 2,
            }
        },
        headers=key,
    )
    booking = response.json()["settings"]["booking"]
    assert booking["capacity"] == 2
    assert booking["opening_hours"]["sat"] == [{"open": "10:00", "close": "13:00"}]
    assert "mon" not in booking["opening_hours"]
    assert booking["opening_hours"]["tue"][0] == {"open": "09:00", "close": "12:00"}


# -- POST /api/channels/test -------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(
        username="agent@example.com", password="app-password-1234abcd", tls_mode="starttls"
    ) as server:
        yield server


@pytest.fixture
async def smtp_api(smtp: SmtpSandbox, make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    # the sandbox listens on loopback, which only SMTP_ALLOW_PRIVATE_HOSTS lets a tenant use
    settings = make_settings(SMTP_CA_FILE=str(smtp.cert_path), SMTP_ALLOW_PRIVATE_HOSTS="true")
    app, client = await start_api(settings)
    try:
        yield Api(app, client)
    finally:
        await client.aclose()
        await app.state.gateway.stop()


def _email_for(smtp: SmtpSandbox, **overrides: Any) -> dict[str, Any]:
    return {**EMAIL, "host": "localhost", "port": smtp.port, **overrides}


async def test_email_test_sends_a_real_message(smtp_api: Api, smtp: SmtpSandbox) -> None:
    _, key = await smtp_api.create_tenant("acme")
    await smtp_api.client.post("/api/channels/email/config", json=_email_for(smtp), headers=key)
    response = await smtp_api.client.post(
        "/api/channels/test", json={"channel": "email", "to": "client@example.org"}, headers=key
    )
    assert response.status_code == 200
    result = response.json()
    assert result["ok"] is True and result["live"] is True
    assert smtp.auth_attempts == [("agent@example.com", True)]
    [received] = smtp.messages
    assert received.rcpt_tos == ("client@example.org",)
    assert received.message["Message-ID"] == result["provider_message_id"]
    logged = await smtp_api.client.get(f"/api/messages/{result['message_id']}", headers=key)
    assert logged.json()["status"] == "sent"
    assert logged.json()["metadata"] == {"channel_test": True}


async def test_email_test_reports_a_wrong_password_and_records_it(
    smtp_api: Api, smtp: SmtpSandbox
) -> None:
    _, key = await smtp_api.create_tenant("acme")
    await smtp_api.client.post(
        "/api/channels/email/config",
        json=_email_for(smtp, password="wrong-password-0000"),
        headers=key,
    )
    response = await smtp_api.client.post(
        "/api/channels/test", json={"channel": "email", "to": "client@example.org"}, headers=key
    )
    result = response.json()
    assert result["ok"] is False
    assert result["outcome"] == "configuration"
    assert result["code"] == "535"
    assert "wrong-password-0000" not in response.text
    assert smtp.messages == []
    view = (await smtp_api.client.get("/api/channels/email/config", headers=key)).json()
    assert view["last_error"].startswith("authentication failed")


async def test_email_test_reports_an_unreachable_server(smtp_api: Api) -> None:
    from gateway.sandbox.server import free_port

    _, key = await smtp_api.create_tenant("acme")
    await smtp_api.client.post(
        "/api/channels/email/config",
        json={**EMAIL, "host": "localhost", "port": free_port()},
        headers=key,
    )
    response = await smtp_api.client.post(
        "/api/channels/test", json={"channel": "email", "to": "client@example.org"}, headers=key
    )
    result = response.json()
    assert result["ok"] is False and result["outcome"] == "transient"


@pytest.fixture
async def loopback_api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    """Loopback hosts allowed, and no extra CA: the sandbox's certificate is not trusted."""
    app, client = await start_api(make_settings(SMTP_ALLOW_PRIVATE_HOSTS="true"))
    try:
        yield Api(app, client)
    finally:
        await client.aclose()
        await app.state.gateway.stop()


async def test_email_test_refuses_an_untrusted_certificate(
    loopback_api: Api, smtp: SmtpSandbox
) -> None:
    api = loopback_api
    _, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/email/config", json=_email_for(smtp), headers=key)
    response = await api.client.post(
        "/api/channels/test", json={"channel": "email", "to": "client@example.org"}, headers=key
    )
    result = response.json()
    assert result["ok"] is False
    assert result["outcome"] == "configuration"
    assert smtp.auth_attempts == [], "no password is sent over an unverified connection"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"channel": "email", "to": "not-an-address"}, 422),
        ({"channel": "sms", "to": "hello"}, 422),
        ({"channel": "pigeon", "to": "+33612345678"}, 422),
        ({"channel": "email"}, 422),
        ({"channel": "email", "to": "client@example.org"}, 409),
    ],
)
async def test_channel_test_bad_inputs(api: Api, body: dict[str, Any], status: int) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.post("/api/channels/test", json=body, headers=key)
    assert response.status_code == status


async def test_phone_test_validates_without_a_call(api: Api) -> None:
    tenant, key = await api.create_tenant("acme")
    await api.client.put(
        f"/admin/tenants/{tenant['id']}/channels/phone/config",
        json={
            "vapi_assistant_id": "asst_1",
            "vapi_phone_number_id": "pn_1",
            "dedicated_numbers": ["+33939035761"],
        },
        headers=api.admin,
    )
    response = await api.client.post(
        "/api/channels/test", json={"channel": "phone", "to": "+33612345678"}, headers=key
    )
    assert response.status_code == 409, "VAPI_API_KEY is a gateway setting still missing"
    assert response.json()["error"]["details"]["missing"] == ["VAPI_API_KEY"]
