"""Tenant API key scopes: a key holds `read`, `send` and/or `config`, each tenant endpoint
needs one, and a key without it gets 403 `insufficient_scope` naming the scope, before the
request does anything. Keys issued before scopes existed keep all three."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.app import all_endpoints
from gateway.config import Settings
from gateway.migrations import apply_migrations
from gateway.services.tenants import generate_key, hash_key
from gateway.store import postgres_migrations
from gateway.store.migration_files import discover
from tests import postgres as test_postgres
from tests.conftest import TWILIO, Api, running_api

CLIENT = "+33612345678"
SMS_CONFIG = "/api/channels/sms/config"

# The README's table: what each tenant endpoint needs.
SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/api/channels"): "read",
    ("GET", "/api/channels/{channel_type}/config"): "read",
    ("POST", "/api/channels/{channel_type}/config"): "config",
    ("PUT", "/api/channels/{channel_type}/config"): "config",
    ("POST", "/api/channels/{channel_type}/toggle"): "config",
    ("POST", "/api/channels/test"): "send",
    ("POST", "/api/channels/sms/send"): "send",
    ("POST", "/api/channels/email/send"): "send",
    ("POST", "/api/channels/whatsapp/send"): "send",
    ("GET", "/api/messages"): "read",
    ("GET", "/api/messages/{message_id}"): "read",
    ("GET", "/api/availability"): "read",
    ("GET", "/api/appointments"): "read",
    ("POST", "/api/appointments"): "send",
    ("GET", "/api/appointments/{appointment_id}"): "read",
    ("PATCH", "/api/appointments/{appointment_id}"): "send",
    ("GET", "/api/calls"): "read",
    ("GET", "/api/prospects"): "read",
    ("GET", "/api/tickets"): "read",
    ("GET", "/api/communications"): "read",
    ("GET", "/api/metrics/messages"): "read",
    ("GET", "/api/metrics/calls"): "read",
    ("GET", "/api/metrics/unprofitable"): "read",
    ("DELETE", "/api/contacts/{contact}"): "config",
}
_PATH_VALUES = {
    "{channel_type}": "sms",
    "{message_id}": "msg_none",
    "{appointment_id}": "apt_none",
    "{contact}": "+33699999999",
}


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def sms_tenant(api: Api, slug: str = "acme") -> tuple[dict[str, Any], dict[str, str]]:
    tenant, key = await api.create_tenant(slug)
    response = await api.client.post(
        "/api/channels/sms/toggle", json={"enabled": True}, headers=key
    )
    assert response.status_code == 200, response.text
    return tenant, key


async def issue(api: Api, tenant_id: str, scopes: list[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"label": "scoped"} if scopes is None else {"scopes": scopes}
    response = await api.client.post(
        f"/admin/tenants/{tenant_id}/api-keys", json=body, headers=api.admin
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def bearer(created: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {created['key']}"}


def assert_refused(response: Any, scope: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope"
    assert error["details"]["scope"] == scope
    assert scope in error["message"]


async def message_count(api: Api) -> int:
    row = await api.gateway.db.fetchone("SELECT COUNT(*) AS n FROM channel_messages_log")
    return int(row["n"])


async def test_a_read_key_reads_but_neither_sends_nor_configures(api: Api) -> None:
    tenant, _ = await sms_tenant(api)
    reader = bearer(await issue(api, tenant["id"], ["read"]))

    listing = await api.client.get("/api/messages", headers=reader)
    assert listing.status_code == 200 and listing.json()["messages"] == []
    sent = await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": "Bonjour"}, headers=reader
    )
    assert_refused(sent, "send")
    assert await message_count(api) == 0, "a refused send stores nothing"
    changed = await api.client.post(
        "/api/channels/sms/toggle", json={"enabled": False}, headers=reader
    )
    assert_refused(changed, "config")
    channels = await api.client.get("/api/channels", headers=reader)
    sms = next(c for c in channels.json()["channels"] if c["channel"] == "sms")
    assert sms["enabled"] is True, "the refused toggle changed nothing"


async def test_a_send_key_sends_but_cannot_read_back_or_configure(api: Api) -> None:
    tenant, _ = await sms_tenant(api)
    sender = bearer(await issue(api, tenant["id"], ["send"]))

    sent = await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": "Bonjour"}, headers=sender
    )
    assert sent.status_code == 202, sent.text
    assert_refused(
        await api.client.get(f"/api/messages/{sent.json()['id']}", headers=sender), "read"
    )
    assert_refused(
        await api.client.put(SMS_CONFIG, json={"templates": {}}, headers=sender), "config"
    )


async def test_a_config_key_configures_but_cannot_send(api: Api) -> None:
    tenant, full = await sms_tenant(api)
    admin_of_settings = bearer(await issue(api, tenant["id"], ["config"]))

    updated = await api.client.put(
        SMS_CONFIG, json={"templates": {"rappel": "Bonjour {name}"}}, headers=admin_of_settings
    )
    assert updated.status_code == 200, updated.text
    shown = await api.client.get(SMS_CONFIG, headers=full)
    assert shown.json()["settings"]["templates"] == {"rappel": "Bonjour {name}"}
    assert_refused(
        await api.client.post(
            "/api/channels/sms/send",
            json={"to": CLIENT, "body": "Bonjour"},
            headers=admin_of_settings,
        ),
        "send",
    )
    assert await message_count(api) == 0


async def test_every_tenant_endpoint_admits_only_keys_with_its_scope(api: Api) -> None:
    tenant, _ = await sms_tenant(api)
    keys = {scope: bearer(await issue(api, tenant["id"], [scope])) for scope in SCOPES.values()}
    wrong: list[str] = []
    for (method, path), needed in SCOPES.items():
        url = path
        for name, value in _PATH_VALUES.items():
            url = url.replace(name, value)
        body = None if method == "GET" else {}
        for scope, key in keys.items():
            response = await api.client.request(method, url, json=body, headers=key)
            refused = (
                response.status_code == 403
                and response.json()["error"]["code"] == "insufficient_scope"
            )
            if refused != (scope != needed):
                wrong.append(f"{method} {path} with a {scope!r} key: {response.status_code}")
            elif refused and response.json()["error"]["details"]["scope"] != needed:
                wrong.append(f"{method} {path} names {response.json()['error']['details']}")
    assert wrong == []


def test_every_tenant_endpoint_declares_its_scope() -> None:
    declared = {(ep.method, ep.path): ep.scope for ep in all_endpoints() if ep.auth == "tenant"}
    assert declared == SCOPES


async def test_the_openapi_document_names_each_operation_s_scope(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    send = document["paths"]["/api/channels/sms/send"]["post"]
    assert send["security"] == [{"bearer": ["send"]}]
    assert "insufficient_scope" in send["responses"]["403"]["description"]
    assert document["paths"]["/api/messages"]["get"]["security"] == [{"bearer": ["read"]}]


async def test_keys_are_issued_with_the_scopes_asked_and_listed_with_them(api: Api) -> None:
    tenant, _ = await api.create_tenant("acme")
    default = await issue(api, tenant["id"], None)
    assert default["scopes"] == ["read", "send", "config"]
    scoped = await issue(api, tenant["id"], ["config", "read", "config"])
    assert scoped["scopes"] == ["read", "config"]

    detail = await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)
    listed = {k["id"]: k["scopes"] for k in detail.json()["api_keys"]}
    assert listed[default["id"]] == ["read", "send", "config"]
    assert listed[scoped["id"]] == ["read", "config"]
    first = next(k for k in detail.json()["api_keys"] if k["label"] == "default")
    assert first["scopes"] == ["read", "send", "config"], "a tenant's first key can do all"


@pytest.mark.parametrize(
    "scopes",
    [[], ["admin"], ["read", "write"], "read", ["READ"], [None]],
    ids=["empty", "unknown", "one-unknown", "not-a-list", "wrong-case", "null"],
)
async def test_bad_scopes_are_422_and_issue_no_key(api: Api, scopes: Any) -> None:
    tenant, _ = await api.create_tenant("acme")
    response = await api.client.post(
        f"/admin/tenants/{tenant['id']}/api-keys", json={"scopes": scopes}, headers=api.admin
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert {f["field"].split(".")[0] for f in error["details"]["fields"]} == {"scopes"}
    detail = await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)
    assert len(detail.json()["api_keys"]) == 1, "only the tenant's first key exists"


async def test_a_key_written_without_scopes_holds_all_three(api: Api) -> None:
    """What the column's default gives a row inserted the way keys were before scopes."""
    tenant, _ = await sms_tenant(api)
    key, prefix = generate_key()
    await api.gateway.db.execute_write(
        "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, label, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        ("key_legacy", tenant["id"], prefix, hash_key(key), "legacy", "2024-01-01T00:00:00Z"),
    )
    await assert_all_scopes(api, {"Authorization": f"Bearer {key}"})


async def assert_all_scopes(api: Api, key: dict[str, str]) -> None:
    assert (await api.client.get("/api/messages", headers=key)).status_code == 200
    sent = await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": "Bonjour"}, headers=key
    )
    assert sent.status_code == 202, sent.text
    configured = await api.client.put(SMS_CONFIG, json={"templates": {}}, headers=key)
    assert configured.status_code == 200, configured.text


# -- a database made before migration 0010: its keys keep working after the upgrade --------

_OLD_TENANT = (
    "INSERT INTO tenants (id, slug, name, timezone, status, created_at, updated_at) "
    "VALUES ('ten_old', 'old', 'Old', 'Europe/Paris', 'active', '2024-01-01T00:00:00Z', "
    "'2024-01-01T00:00:00Z')"
)
_OLD_KEY = (
    "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, label, created_at) "
    "VALUES ('key_old', 'ten_old', '{prefix}', '{hash}', 'old', '2024-01-01T00:00:00Z')"
)
_OLD_CHANNELS = (
    "INSERT INTO channel_configurations "
    "(id, tenant_id, channel_type, enabled, settings, created_at, updated_at) "
    "VALUES ('chc_old_{c}', 'ten_old', '{c}', {on}, '{{}}', '2024-01-01T00:00:00Z', "
    "'2024-01-01T00:00:00Z')"
)


def _before_scopes(source: Path, target: Path) -> Path:
    target.mkdir()
    for migration in discover(source):
        if migration.name < "0010":
            shutil.copy(migration.path, target / migration.name)
    return target


def _old_rows(key: str) -> list[str]:
    prefix = key.split("_")[1]
    channels = [
        _OLD_CHANNELS.format(c=c, on=1 if c == "sms" else 0)
        for c in ("phone", "sms", "email", "whatsapp")
    ]
    return [_OLD_TENANT, _OLD_KEY.format(prefix=prefix, hash=hash_key(key)), *channels]


async def test_keys_from_before_scopes_keep_every_scope_after_the_upgrade(
    make_settings: Callable[..., Settings], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    key, _ = generate_key()
    settings = make_settings(**TWILIO)
    if test_postgres.test_engine() == "postgres":
        url: str = request.getfixturevalue("empty_postgres_url")
        old = _before_scopes(
            settings.migrations_dir.with_name("migrations_postgres"), tmp_path / "old"
        )
        postgres_migrations.apply(url, old, settings.migrations_table)
        with psycopg.connect(url, autocommit=True) as conn:
            for sql in _old_rows(key):
                conn.execute(sql.encode())
        settings = make_settings(**TWILIO, DATABASE_URL=url)
    else:
        old = _before_scopes(settings.migrations_dir, tmp_path / "old")
        apply_migrations(settings.database_path, old, settings.migrations_table)
        with sqlite3.connect(settings.database_path) as conn:
            for sql in _old_rows(key):
                conn.execute(sql)
    async with running_api(settings) as api:
        await assert_all_scopes(api, {"Authorization": f"Bearer {key}"})
        detail = await api.client.get("/admin/tenants/ten_old", headers=api.admin)
        assert detail.json()["api_keys"][0]["scopes"] == ["read", "send", "config"]
