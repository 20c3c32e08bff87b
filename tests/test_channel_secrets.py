"""Stored credentials under faults (issue 9, items 12a, 12f and 12g): an old ciphertext
written back is refused, one unreadable channel spoils only itself, a blank field clears."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

EMAIL = {
    "host": "93.184.215.14",
    "port": 587,
    "username": "agent@example.com",
    "password": "first-password-1111",
    "from_email": "agent@example.com",
}


async def ciphertext(api: Api, tenant_id: str) -> Any:
    row = await api.gateway.db.fetchone(
        "SELECT config_encrypted FROM channel_configurations "
        "WHERE tenant_id = ? AND channel_type = 'email'",
        (tenant_id,),
    )
    return row["config_encrypted"]


async def test_an_old_ciphertext_written_back_into_its_row_is_refused(api: Api) -> None:
    tenant, key = await api.create_tenant("acme")
    saved = await api.client.post("/api/channels/email/config", json=EMAIL, headers=key)
    assert saved.status_code == 200, saved.text
    old = await ciphertext(api, tenant["id"])
    changed = await api.client.put(
        "/api/channels/email/config", json={"password": "second-password-2222"}, headers=key
    )
    assert changed.json()["secrets"]["password"]["last4"] == "2222"
    # someone with write access to the database puts the old credentials back
    await api.gateway.db.execute_write(
        "UPDATE channel_configurations SET config_encrypted = ? "
        "WHERE tenant_id = ? AND channel_type = 'email'",
        (old, tenant["id"]),
    )
    replayed = await api.client.get("/api/channels/email/config", headers=key)
    assert replayed.status_code == 503
    assert replayed.json()["error"]["code"] == "credentials_unreadable"
    # the tenant can still replace them all
    again = await api.client.post(
        "/api/channels/email/config", json={**EMAIL, "password": "third-password-3333"}, headers=key
    )
    assert again.status_code == 200
    assert again.json()["secrets"]["password"]["last4"] == "3333"


async def test_one_unreadable_channel_does_not_hide_the_others(api: Api) -> None:
    tenant, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/email/config", json=EMAIL, headers=key)
    await api.gateway.db.execute_write(
        "UPDATE channel_configurations SET config_encrypted = 'v1:k1:AAAA' "
        "WHERE tenant_id = ? AND channel_type = 'email'",
        (tenant["id"],),
    )
    listing = await api.client.get("/api/channels", headers=key)
    assert listing.status_code == 200
    channels = {c["channel"]: c for c in listing.json()["channels"]}
    assert set(channels) == {"phone", "sms", "email", "whatsapp"}
    assert channels["email"]["error"] == "credentials_unreadable"
    assert channels["email"]["configured"] is False
    assert "error" not in channels["sms"]


async def test_a_blank_field_in_a_patch_clears_it(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    await api.client.post(
        "/api/channels/email/config",
        json={**EMAIL, "reply_to": "desk@example.com", "from_name": "Acme"},
        headers=key,
    )
    cleared = await api.client.put(
        "/api/channels/email/config", json={"reply_to": "", "from_name": ""}, headers=key
    )
    assert cleared.status_code == 200, cleared.text
    settings = cleared.json()["settings"]
    assert settings["reply_to"] is None and settings["from_name"] is None
    assert cleared.json()["secrets"]["password"]["set"] is True, "omitted: kept"


async def test_two_writers_of_one_channel_never_silently_lose_a_secret(api: Api) -> None:
    import asyncio

    _, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/email/config", json=EMAIL, headers=key)
    answers = await asyncio.gather(
        *(
            api.client.put(
                "/api/channels/email/config",
                json={"password": f"racing-password-{n:04d}"},
                headers=key,
            )
            for n in range(6)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 409} and 200 in codes
    final = (await api.client.get("/api/channels/email/config", headers=key)).json()
    winners = {a.json()["secrets"]["password"]["last4"] for a in answers if a.status_code == 200}
    assert final["secrets"]["password"]["last4"] in winners
