"""The operator's tenant lifecycle (issue 14, item 1): edit, suspend and resume, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ids import later_iso, now_iso
from gateway.store import calls as call_store
from gateway.store import messages as message_store
from gateway.store import reminders as reminder_store
from gateway.store import tenants as tenant_store
from gateway.store.engine import Connection
from tests.conftest import TWILIO, Api, running_api
from tests.test_isolation import a_free_slot, an_appointment
from tests.test_messages_api import CLIENT, sms_tenant
from tests.test_voice import (
    Voice,
    assert_polite_hangup,
    call,
    logged,
    make_tenant,
    shared_stack,
    vapi,
    voice,
)

__all__ = ["shared_stack", "vapi", "voice"]  # fixtures used by name


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def tenant_id_of(api: Api, key: dict[str, str]) -> str:
    listing = (await api.client.get("/admin/tenants", headers=api.admin)).json()["tenants"]
    for tenant in listing:
        detail = (await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)).json()
        if any(k["prefix"] in key["Authorization"] for k in detail["api_keys"]):
            return str(tenant["id"])
    raise AssertionError("no tenant holds this key")


async def patch(api: Api, tenant: str, body: Any) -> Any:
    return await api.client.patch(f"/admin/tenants/{tenant}", json=body, headers=api.admin)


async def send_sms(api: Api, key: dict[str, str], text: str = "Bonjour") -> Any:
    return await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": text}, headers=key
    )


async def claim(api: Api) -> list[Any]:
    return await api.gateway.db.write_fn(lambda c: message_store.claim_due(c, now_iso(), 50))


async def message_status(api: Api, message_id: str) -> str:
    row = await api.gateway.db.fetchone(
        "SELECT status FROM channel_messages_log WHERE id = ?", (message_id,)
    )
    return str(row["status"])


# -- edits --------------------------------------------------------------------------------


async def test_name_and_timezone_edits_show_in_the_tenant_and_the_list(api: Api) -> None:
    tenant, _ = await api.create_tenant("acme")
    response = await patch(api, tenant["id"], {"name": "Acme SARL", "timezone": "America/Montreal"})
    assert response.status_code == 200, response.text
    assert response.json()["tenant"]["name"] == "Acme SARL"
    detail = (await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)).json()
    assert (detail["tenant"]["name"], detail["tenant"]["timezone"]) == (
        "Acme SARL",
        "America/Montreal",
    )
    assert detail["tenant"]["slug"] == "acme" and detail["tenant"]["status"] == "active"
    # by slug too
    by_slug = await patch(api, "acme", {"status": "suspended"})
    assert by_slug.status_code == 200
    listing = (await api.client.get("/admin/tenants", headers=api.admin)).json()["tenants"]
    assert [(t["slug"], t["status"]) for t in listing] == [("acme", "suspended")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "paused"}, "status"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "x" * 201}, "name"),
        ({"name": "Line\r\nBreak"}, "name"),
        ({"slug": "new-slug"}, "slug"),
        ({"plan": "gold"}, "plan"),
        ({"name": None}, "body"),
        ({"status": "suspended", "country": "FR"}, "country"),
    ],
)
async def test_bad_edits_are_422_and_change_nothing(api: Api, body: Any, field: str) -> None:
    tenant, _ = await api.create_tenant("acme")
    response = await patch(api, tenant["id"], body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert field in [f["field"] for f in error["details"]["fields"]] or field == "body"
    detail = (await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)).json()
    assert {k: detail["tenant"][k] for k in ("name", "timezone", "status", "slug")} == {
        "name": "Acme",
        "timezone": "Europe/Paris",
        "status": "active",
        "slug": "acme",
    }


async def test_edit_errors_unknown_tenant_malformed_body_and_tenant_key(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    unknown = await patch(api, "ten_nobody", {"status": "suspended"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "tenant_not_found"
    malformed = await api.client.patch(
        "/admin/tenants/acme",
        content=b"{not json",
        headers={**api.admin, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    as_tenant = await api.client.patch("/admin/tenants/acme", json={"name": "Mine"}, headers=key)
    assert as_tenant.status_code == 403
    detail = (await api.client.get("/admin/tenants/acme", headers=api.admin)).json()
    assert detail["tenant"]["name"] == "Acme"


# -- suspension ---------------------------------------------------------------------------


async def test_a_suspended_tenant_cannot_send_test_or_book_but_reads_its_data(api: Api) -> None:
    key = await sms_tenant(api)
    sent = await send_sms(api, key)
    assert sent.status_code == 202
    appointment = await an_appointment(api, key)
    shown = (await api.client.get("/api/messages", headers=key)).json()["messages"]
    assert (await patch(api, "acme", {"status": "suspended"})).status_code == 200

    refused = {
        "send": await send_sms(api, key, "another"),
        "channel test": await api.client.post(
            "/api/channels/test", json={"channel": "sms", "to": CLIENT}, headers=key
        ),
        "booking": await api.client.post(
            "/api/appointments",
            json={"customer_name": "B", "customer_phone": CLIENT, "starts_at": later_iso(86400)},
            headers=key,
        ),
        "moving a booking": await api.client.patch(
            f"/api/appointments/{appointment}", json={"status": "cancelled"}, headers=key
        ),
        "config": await api.client.post(
            "/api/channels/sms/toggle", json={"enabled": False}, headers=key
        ),
    }
    for what, response in refused.items():
        assert response.status_code == 403, (what, response.text)
        assert response.json()["error"]["code"] == "tenant_suspended", what
    messages = await api.client.get("/api/messages", headers=key)
    assert messages.status_code == 200
    assert messages.json()["messages"] == shown, "nothing written"
    assert (await api.client.get("/api/channels", headers=key)).status_code == 200
    booked = await api.client.get(f"/api/appointments/{appointment}", headers=key)
    assert booked.status_code == 200 and booked.json()["status"] == "booked"

    assert (await patch(api, "acme", {"status": "active"})).status_code == 200
    assert (await send_sms(api, key, "again")).status_code == 202


async def test_a_suspended_tenants_queued_messages_wait_and_go_once_resumed(api: Api) -> None:
    key = await sms_tenant(api)
    other = await sms_tenant(api, "other")
    waiting = (await send_sms(api, key)).json()["id"]
    goes = (await send_sms(api, other, "Salut")).json()["id"]
    assert (await patch(api, "acme", {"status": "suspended"})).status_code == 200

    assert [row["id"] for row in await claim(api)] == [goes], "only the active tenant's"
    assert await message_status(api, waiting) == "queued", "held, not failed"
    assert await claim(api) == []

    woken: list[bool] = []
    api.gateway.messaging.wake = lambda: woken.append(True)
    assert (await patch(api, "acme", {"status": "active"})).status_code == 200
    assert woken, "resuming wakes the dispatcher"
    assert [row["id"] for row in await claim(api)] == [waiting]


async def test_a_suspended_tenants_reminders_wait(api: Api) -> None:
    key = await sms_tenant(api)
    appointment = await an_appointment(api, key)

    def claim_all(conn: Connection) -> list[str]:
        rows = reminder_store.claim_reminders(
            conn, "24h", now_iso(), later_iso(30 * 86400), 0, now_iso(), now_iso(), 50
        )
        for row in rows:  # give the claim back: the next call sees the same rows
            reminder_store.release_reminder(conn, row["id"], "24h", row["reminder_24h_at"])
        return [row["id"] for row in rows]

    assert await api.gateway.db.write_fn(claim_all) == [appointment]
    await patch(api, "acme", {"status": "suspended"})
    assert await api.gateway.db.write_fn(claim_all) == []
    await patch(api, "acme", {"status": "active"})
    assert await api.gateway.db.write_fn(claim_all) == [appointment]


async def test_a_suspended_tenants_calls_hear_the_service_is_unavailable(voice: Voice) -> None:
    tenant = await make_tenant(voice)
    suspended = await voice.http.patch(
        f"/admin/tenants/{tenant.id}", json={"status": "suspended"}, headers=voice.stack.admin
    )
    assert suspended.status_code == 200

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    assert_polite_hangup(twiml)
    say = twiml.find("Say")
    assert say is not None and "pas disponible" in (say.text or "")
    assert voice.vapi.calls == [], "no assistant is called"
    [row] = await logged(voice, params["CallSid"])
    assert row["tenant_id"] == tenant.id

    await voice.http.patch(
        f"/admin/tenants/{tenant.id}", json={"status": "active"}, headers=voice.stack.admin
    )
    twiml, _ = await call(voice, forwarded_from=tenant.forwarding)
    assert len(voice.vapi.calls) == 1, "resumed: calls are bridged again"


# -- deletion -----------------------------------------------------------------------------


async def tables_with_tenant_id(api: Api) -> list[str]:
    db = api.gateway.db
    if db.dialect == "postgres":
        rows = await db.fetchall(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'tenant_id'"
        )
        return sorted(str(r["table_name"]) for r in rows)
    tables = await db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    found = []
    for table in tables:
        columns = await db.fetchall(f"PRAGMA table_info({table['name']})")
        if any(c["name"] == "tenant_id" for c in columns):
            found.append(str(table["name"]))
    return sorted(found)


async def rows_of(api: Api, tenant_id: str) -> dict[str, int]:
    counts = {}
    for table in await tables_with_tenant_id(api):
        row = await api.gateway.db.fetchone(
            f"SELECT COUNT(*) AS n FROM {table} WHERE tenant_id = ?", (tenant_id,)
        )
        counts[table] = int(row["n"])
    return counts


async def tenant_with_everything(api: Api, slug: str) -> tuple[str, dict[str, str]]:
    key = await sms_tenant(api, slug)
    tenant_id = await tenant_id_of(api, key)
    n = 1 if slug == "acme" else 2
    response = await api.client.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": [f"+3361299900{n}"]},
        headers=key,
    )
    assert response.status_code == 200, response.text
    assert (await send_sms(api, key)).status_code == 202
    await an_appointment(api, key)
    created = await api.client.post(
        f"/admin/tenants/{tenant_id}/api-keys", json={}, headers=api.admin
    )
    assert created.status_code == 201
    now = now_iso()

    def write(conn: Connection) -> None:
        message_store.add_suppression(conn, tenant_id, "sms", "+33612000000", "manual", None)
        call_store.insert_reported_call(conn, tenant_id, f"vapi-call-{slug}")
        conn.execute(
            "INSERT INTO qualified_prospects (id, tenant_id, contact_name, created_at) "
            "VALUES (?, ?, 'Prospect', ?)",
            (f"pro_{slug}", tenant_id, now),
        )
        conn.execute(
            "INSERT INTO tickets (id, tenant_id, subject, created_at, updated_at) "
            "VALUES (?, ?, 'Leak', ?, ?)",
            (f"tic_{slug}", tenant_id, now, now),
        )

    await api.gateway.db.write_fn(write)
    return tenant_id, key


async def test_deleting_a_tenant_removes_every_row_it_owned(api: Api) -> None:
    gone, key = await tenant_with_everything(api, "acme")
    kept, other_key = await tenant_with_everything(api, "other")
    before = await rows_of(api, gone)
    owned = {
        "api_keys",
        "channel_configurations",
        "tenant_numbers",
        "channel_messages_log",
        "message_events",
        "suppressions",
        "call_logs",
        "rendez_vous",
        "qualified_prospects",
        "tickets",
    }
    assert owned <= set(before), "the schema still has these tables"
    assert all(before[table] > 0 for table in owned), before
    others_before = await rows_of(api, kept)

    response = await api.client.delete(f"/admin/tenants/{gone}?confirm=acme", headers=api.admin)

    assert response.status_code == 204, response.text
    assert set((await rows_of(api, gone)).values()) == {0}
    tenant = await api.gateway.db.fetchone("SELECT id FROM tenants WHERE id = ?", (gone,))
    assert tenant is None
    assert await rows_of(api, kept) == others_before, "the other tenant keeps everything"
    assert (await api.client.get(f"/admin/tenants/{gone}", headers=api.admin)).status_code == 404
    assert (await api.client.get("/api/messages", headers=key)).status_code == 401
    assert (await api.client.get("/api/messages", headers=other_key)).status_code == 200
    listing = (await api.client.get("/admin/tenants", headers=api.admin)).json()["tenants"]
    assert [t["slug"] for t in listing] == ["other"]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("", 422, "validation_failed"),
        ("?confirm=", 422, "validation_failed"),
        ("?confirm=other", 422, "confirmation_mismatch"),
        ("?confirm=ACME", 422, "confirmation_mismatch"),
        ("?confirm=acme&force=1", 422, "validation_failed"),
    ],
)
async def test_a_deletion_not_confirmed_by_the_slug_deletes_nothing(
    api: Api, query: str, status: int, code: str
) -> None:
    tenant_id, key = await tenant_with_everything(api, "acme")
    before = await rows_of(api, tenant_id)

    response = await api.client.delete(f"/admin/tenants/{tenant_id}{query}", headers=api.admin)

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await rows_of(api, tenant_id) == before
    assert (await api.client.get("/api/messages", headers=key)).status_code == 200


async def test_deleting_an_unknown_tenant_is_404_and_a_tenant_key_is_refused(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    unknown = await api.client.delete("/admin/tenants/ten_nobody?confirm=x", headers=api.admin)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "tenant_not_found"
    as_tenant = await api.client.delete("/admin/tenants/acme?confirm=acme", headers=key)
    assert as_tenant.status_code == 403
    assert (await api.client.get("/admin/tenants/acme", headers=api.admin)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/channels/sms/send"),
        ("POST", "/api/appointments"),
        ("PUT", "/api/channels/email/config"),
    ],
)
async def test_a_tenant_deleted_while_its_request_runs_gets_a_clear_409(
    api: Api, monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    """The request's key was checked, then the operator deleted the tenant before the request
    wrote: the write's foreign key fails. The answer is the one error shape, not a 500, and
    nothing of the request is left."""
    key = await sms_tenant(api)
    tenant_id = await tenant_id_of(api, key)
    body: dict[str, Any] = {
        "/api/channels/sms/send": {"to": CLIENT, "body": "Bonjour"},
        "/api/channels/email/config": {"host": "smtp.example.com"},
    }.get(path) or {
        "customer_name": "Léa",
        "customer_phone": CLIENT,
        "starts_at": await a_free_slot(api, key),
    }
    db = api.gateway.db
    write_fn = db.write_fn
    armed = True

    async def deleted_first(fn: Callable[[Connection], Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal armed
        if armed:
            armed = False
            await write_fn(lambda conn: tenant_store.delete_tenant(conn, tenant_id))
        return await write_fn(fn, *args, **kwargs)

    monkeypatch.setattr(db, "write_fn", deleted_first)
    response = await api.client.request(method, path, json=body, headers=key)

    assert not armed, "the request wrote nothing, so it did not race the deletion"
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    # a channel's settings have their own word for it (written meanwhile): either way the
    # answer says that nothing of the request was kept
    assert error["code"] in {"concurrent_change", "config_changed"}, error
    monkeypatch.setattr(db, "write_fn", write_fn)
    assert set((await rows_of(api, tenant_id)).values()) == {0}
