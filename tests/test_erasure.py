"""Erasure of one contact (DELETE /api/contacts/{contact}): the person's addresses and texts
leave every row of that tenant — the database file itself on SQLite — while the tenant's
KPIs stay exactly what they were, the person stays opted out, and another tenant's rows of
the same person stay whole."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ids import iso
from gateway.store.engine import Connection
from tests.conftest import TWILIO, Api, running_api

ANNE = "+33611111111"
ANNE_NATIONAL = "06 11 11 11 11"
ANNE_EMAIL = "anne.martin@example.com"
ANNE_EMAIL_AS_GIVEN = "Anne.Martin@Example.com"  # stored as normalised: Anne.Martin@example.com
BRUNO = "+33622222222"
SHARED_LINE = "+33939035761"
SECRETS = {
    "phone": ANNE,
    "phone digits": ANNE[1:],
    "email": ANNE_EMAIL,
    "email as given": "Anne.Martin@example.com",
    "name": "Anne Martin",
    "body": "secret-code-4242-for-anne",
    "api body": "api-sent-body-for-anne",
    "subject": "your-private-invoice-anne",
    "transcript": "i-need-a-flat-near-the-park-anne",
    "summary": "anne-wants-three-rooms",
    "recording": "recordings/anne-call.mp3",
    "notes": "anne-allergic-to-cats",
    "ticket": "anne-boiler-broken",
}
KEPT = "bruno-keeps-his-text"
_rows = iter(range(1_000_000))


def ago(days: float) -> str:
    return iso(datetime.now(UTC) - timedelta(days=days))


def period() -> dict[str, str]:
    today = date.today()
    return {
        "start": (today - timedelta(days=60)).isoformat(),
        "end": (today + timedelta(1)).isoformat(),
    }


async def insert(api: Api, table: str, tenant_id: str, **values: Any) -> str:
    n = next(_rows)
    row = {"id": f"{table[:4]}_{n:06d}", "tenant_id": tenant_id, **values}
    if table not in ("qualified_prospects", "message_events", "suppressions"):
        row.setdefault("updated_at", row["created_at"])

    def write(conn: Connection) -> None:
        names = ", ".join(row)
        marks = ", ".join(f":{name}" for name in row)
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", row)

    await api.gateway.db.write_fn(write)
    return str(row["id"])


async def message(api: Api, tenant_id: str, to: str, **values: Any) -> str:
    fields: dict[str, Any] = {
        "channel": "sms",
        "direction": "outbound",
        "to_address": to,
        "from_address": SHARED_LINE,
        "status": "delivered",
        "num_segments": 1,
        "character_count": 40,
        "billed_cost": 0.08,
        "provider_cost": 0.05,
        "margin": 0.03,
        "metadata": "{}",
        "created_at": ago(10),
        **values,
    }
    return await insert(api, "channel_messages_log", tenant_id, **fields)


async def event(api: Api, tenant_id: str, message_id: str, payload: str) -> None:
    await insert(
        api,
        "message_events",
        tenant_id,
        message_id=message_id,
        source="twilio",
        status="delivered",
        payload=payload,
        created_at=ago(9),
    )


async def anne_everywhere(api: Api, tenant_id: str) -> None:
    """Anne in every table of one tenant, and Bruno next to her."""
    sms = await message(api, tenant_id, ANNE, body=SECRETS["body"])
    await event(api, tenant_id, sms, f'{{"To": "{ANNE}", "Body": "{SECRETS["body"]}"}}')
    await message(
        api,
        tenant_id,
        SHARED_LINE,
        direction="inbound",
        from_address=ANNE,
        status="received",
        body=f"STOP {SECRETS['body']}",
        billed_cost=None,
        provider_cost=None,
        margin=None,
    )
    await message(
        api,
        tenant_id,
        ANNE,
        status="failed",
        failure_reason=f"21610: {ANNE} unsubscribed",
        body=SECRETS["body"],
        created_at=ago(40),
    )
    # the same person's email address in both stored forms: two distinct recipients
    for address in (ANNE_EMAIL, SECRETS["email as given"]):
        await message(
            api,
            tenant_id,
            address,
            channel="email",
            from_address="shop@tenant.example",
            subject=SECRETS["subject"],
            body=SECRETS["body"],
            html_body=f"<p>{SECRETS['name']}</p>",
            num_segments=None,
        )
    await message(api, tenant_id, BRUNO, body=KEPT)
    call = await insert(
        api,
        "call_logs",
        tenant_id,
        call_sid=f"CA{next(_rows):032d}",
        direction="inbound",
        from_number=ANNE,
        to_number=SHARED_LINE,
        outcome="bridged",
        status="ended",
        duration_seconds=125.0,
        billed_cost=0.5,
        provider_cost=0.2,
        margin=0.3,
        transcript=SECRETS["transcript"],
        summary=SECRETS["summary"],
        recording_url=f"https://storage.example/{SECRETS['recording']}",
        answer_twiml=f"<Response><Dial>{ANNE}</Dial></Response>",
        metadata="{}",
        created_at=ago(8),
    )
    await insert(
        api,
        "rendez_vous",
        tenant_id,
        customer_name=SECRETS["name"],
        customer_phone=ANNE,
        customer_email=ANNE_EMAIL,
        starts_at=ago(5),
        ends_at=ago(5),
        status="completed",
        source="voice",
        call_id=call,
        notes=SECRETS["notes"],
        created_at=ago(8),
    )
    await insert(
        api,
        "qualified_prospects",
        tenant_id,
        contact_name=SECRETS["name"],
        contact_phone=ANNE,
        project="rent",
        location="12 rue des Lilas",
        budget=1200.0,
        score=70,
        call_id=call,
        notes=SECRETS["notes"],
        created_at=ago(8),
    )
    # collected during her call, without her number on it
    await insert(
        api,
        "tickets",
        tenant_id,
        contact_name=SECRETS["name"],
        subject=SECRETS["ticket"],
        description=SECRETS["ticket"],
        call_id=call,
        created_at=ago(8),
    )
    await insert(
        api,
        "suppressions",
        tenant_id,
        channel="sms",
        address=ANNE,
        reason="stop_keyword",
        detail=f"STOP from {ANNE}",
        created_at=ago(7),
    )


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def sms_tenant(api: Api, slug: str) -> tuple[str, dict[str, str]]:
    tenant, key = await api.create_tenant(slug)
    toggled = await api.client.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert toggled.status_code == 200, toggled.text
    return str(tenant["id"]), key


async def kpis(api: Api, key: dict[str, str]) -> list[Any]:
    figures = []
    for path in ("/api/metrics/messages", "/api/metrics/calls"):
        response = await api.client.get(path, params=period(), headers=key)
        assert response.status_code == 200, response.text
        figures.append(response.json())
    return figures


async def every_row(api: Api) -> dict[str, list[str]]:
    """Every row of every table, as text, by table."""

    def read(conn: Connection) -> dict[str, list[str]]:
        if conn.dialect == "sqlite":
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        else:
            sql = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        tables = [row[0] for row in conn.execute(sql).fetchall()]
        return {
            table: [repr(tuple(row)) for row in conn.execute(f"SELECT * FROM {table}").fetchall()]
            for table in tables
        }

    found: dict[str, list[str]] = await api.gateway.db.read_fn(read)
    return found


def mentions(rows: dict[str, list[str]], text: str) -> list[str]:
    return [f"{table}: {row}" for table, found in rows.items() for row in found if text in row]


async def erase(api: Api, key: dict[str, str], contact: str) -> dict[str, Any]:
    response = await api.client.delete(f"/api/contacts/{contact}", headers=key)
    assert response.status_code == 200, response.text
    erased: dict[str, Any] = response.json()
    return erased


async def test_an_erased_contact_is_nowhere_in_the_database_and_kpis_do_not_move(
    api: Api,
) -> None:
    tenant_id, key = await sms_tenant(api, "acme")
    # a send through the API (before her STOP): its idempotency record holds the request
    sent = await api.client.post(
        "/api/channels/sms/send",
        json={"to": ANNE, "body": SECRETS["api body"]},
        headers={**key, "Idempotency-Key": "order-77"},
    )
    assert sent.status_code == 202, sent.text
    await anne_everywhere(api, tenant_id)
    await api.gateway.db.execute_write(
        "UPDATE channel_messages_log SET status = 'delivered' WHERE id = ?", (sent.json()["id"],)
    )
    before = await kpis(api, key)
    assert before[0]["current_period"]["unique_recipients"] == 4  # Anne twice by email, Bruno
    assert before[1]["current_period"]["prospects_qualified"] == 1

    by_phone = await erase(api, key, ANNE_NATIONAL)  # read in the tenant's country: France
    assert by_phone["counts"] == {
        "channel_messages_log": 4,
        "message_events": 2,  # the API send's 'queued' event, the callback
        "call_logs": 1,
        "rendez_vous": 1,
        "qualified_prospects": 1,
        "tickets": 1,
        "suppressions": 1,
        "canceled_messages": 0,
    }
    by_email = await erase(api, key, ANNE_EMAIL_AS_GIVEN)
    assert by_email["counts"]["channel_messages_log"] == 2
    assert by_email["counts"]["rendez_vous"] == 0  # her email left it with her number

    assert await kpis(api, key) == before
    rows = await every_row(api)
    leaks = {name: mentions(rows, text) for name, text in SECRETS.items()}
    assert {name: found for name, found in leaks.items() if found} == {}
    assert mentions(rows, KEPT), "Bruno's message is untouched"

    timeline = await api.client.get("/api/communications", params={"contact": ANNE}, headers=key)
    assert timeline.status_code == 200 and timeline.json()["items"] == []
    for path in ("/api/messages", "/api/calls", "/api/prospects", "/api/tickets"):
        listed = await api.client.get(path, headers=key)
        assert listed.status_code == 200, listed.text
        assert [s for s in SECRETS.values() if s in listed.text] == [], path

    # the idempotency record still refuses a replay: nothing is sent twice
    replay = await api.client.post(
        "/api/channels/sms/send",
        json={"to": ANNE, "body": SECRETS["api body"]},
        headers={**key, "Idempotency-Key": "order-77"},
    )
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "idempotency_key_reused"


async def test_the_database_file_holds_none_of_it(api: Api) -> None:
    """SQLite: freed space is zeroed and the WAL emptied, so not even the file's bytes hold
    the erased contact. (PostgreSQL's guarantee is the SQL one: the test above.)"""
    if api.gateway.db.dialect != "sqlite":
        pytest.skip("the bytes of a SQLite file")
    tenant_id, key = await sms_tenant(api, "acme")
    await anne_everywhere(api, tenant_id)
    # rewritten many times before the erasure: old versions of her rows in free space
    for status in ("sent", "delivered", "read", "delivered"):
        await api.gateway.db.execute_write(
            "UPDATE channel_messages_log SET provider_status = ? WHERE tenant_id = ?",
            (status, tenant_id),
        )
    await erase(api, key, ANNE)
    await erase(api, key, ANNE_EMAIL)
    path = Path(api.gateway.db.path)
    files = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
    content = b"".join(p.read_bytes() for p in files)
    assert KEPT.encode() in content, "the file holds what was not erased"
    assert [name for name, text in SECRETS.items() if text.encode() in content] == []


async def test_the_person_stays_opted_out_and_start_still_opts_in(api: Api) -> None:
    tenant_id, key = await sms_tenant(api, "acme")
    await anne_everywhere(api, tenant_id)
    await erase(api, key, ANNE)
    refused = await api.client.post(
        "/api/channels/sms/send", json={"to": ANNE, "body": "Promo"}, headers=key
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "recipient_suppressed"
    rows = await every_row(api)
    assert mentions(rows, ANNE) == []
    # START from the same number lifts the hashed suppression as it lifted the plain one
    from gateway.store import messages as store

    await api.gateway.db.write_fn(
        lambda conn: store.remove_suppression(conn, tenant_id, "sms", ANNE)
    )
    accepted = await api.client.post(
        "/api/channels/sms/send", json={"to": ANNE, "body": "Welcome back"}, headers=key
    )
    assert accepted.status_code == 202, accepted.text


async def test_another_tenant_keeps_the_same_person(api: Api) -> None:
    tenant_id, key = await sms_tenant(api, "acme")
    other_id, other_key = await sms_tenant(api, "other")
    await anne_everywhere(api, tenant_id)
    await anne_everywhere(api, other_id)
    before = await every_row(api)
    await erase(api, key, ANNE)
    after = await every_row(api)
    other_before = [r for rows in before.values() for r in rows if other_id in r]
    other_after = [r for rows in after.values() for r in rows if other_id in r]
    assert sorted(other_after) == sorted(other_before)
    timeline = await api.client.get(
        "/api/communications", params={"contact": ANNE}, headers=other_key
    )
    assert len(timeline.json()["items"]) == 4  # 3 messages and the call


async def test_erasing_again_answers_zeros_and_each_erasure_is_recorded(api: Api) -> None:
    tenant_id, key = await sms_tenant(api, "acme")
    await anne_everywhere(api, tenant_id)
    first = await erase(api, key, ANNE)
    second = await erase(api, key, ANNE)
    assert set(second["counts"].values()) == {0}
    assert second["id"] != first["id"]
    listed = await api.client.get(
        "/admin/erasures", params={"tenant_id": tenant_id}, headers=api.admin
    )
    assert listed.status_code == 200, listed.text
    erasures = listed.json()["erasures"]
    assert [(e["id"], e["kind"], e["counts"]) for e in erasures] == [
        (second["id"], "contact", second["counts"]),
        (first["id"], "contact", first["counts"]),
    ]
    assert ANNE not in listed.text


async def test_queued_messages_are_canceled_and_sends_in_flight_make_it_wait(api: Api) -> None:
    tenant_id, key = await sms_tenant(api, "acme")
    queued = await message(api, tenant_id, ANNE, status="queued", next_attempt_at=ago(-1))
    sending = await message(api, tenant_id, ANNE, status="sending", next_attempt_at=ago(-1))
    busy = await api.client.delete(f"/api/contacts/{ANNE}", headers=key)
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"]["code"] == "contact_in_use"
    assert busy.json()["error"]["details"]["messages_in_flight"] == 1
    queued_row = await api.gateway.db.fetchone(
        "SELECT status, to_address FROM channel_messages_log WHERE id = ?", (queued,)
    )
    assert tuple(queued_row) == ("queued", ANNE), "a refused erasure changes nothing"
    await api.gateway.db.execute_write(
        "UPDATE channel_messages_log SET status = 'sent' WHERE id = ?", (sending,)
    )
    erased = await erase(api, key, ANNE)
    assert erased["counts"]["canceled_messages"] == 1
    queued_row = await api.gateway.db.fetchone(
        "SELECT status, to_address FROM channel_messages_log WHERE id = ?", (queued,)
    )
    assert tuple(queued_row) == ("canceled", erased["pseudonym"])


async def test_an_upcoming_appointment_must_be_cancelled_first(api: Api) -> None:
    tenant_id, key = await sms_tenant(api, "acme")
    await insert(
        api,
        "rendez_vous",
        tenant_id,
        customer_name=SECRETS["name"],
        customer_phone=ANNE,
        starts_at=ago(-3),
        ends_at=ago(-3),
        created_at=ago(1),
    )
    busy = await api.client.delete(f"/api/contacts/{ANNE}", headers=key)
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"]["details"]["upcoming_appointments"] == 1
    assert mentions(await every_row(api), SECRETS["name"]) != []


@pytest.mark.parametrize(
    "contact",
    ["not-a-number", "12", "anne@", "@example.com", "a" * 250 + "@example.com", "%20"],
)
async def test_a_malformed_contact_is_refused_naming_the_field(api: Api, contact: str) -> None:
    _, key = await sms_tenant(api, "acme")
    response = await api.client.delete(f"/api/contacts/{contact}", headers=key)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert [f["field"] for f in error["details"]["fields"]] == ["contact"]


async def test_a_key_without_config_scope_or_no_key_cannot_erase(api: Api) -> None:
    tenant_id, _ = await sms_tenant(api, "acme")
    assert (await api.client.delete(f"/api/contacts/{ANNE}")).status_code == 401
    issued = await api.client.post(
        f"/admin/tenants/{tenant_id}/api-keys", json={"scopes": ["read", "send"]}, headers=api.admin
    )
    reader = {"Authorization": f"Bearer {issued.json()['key']}"}
    refused = await api.client.delete(f"/api/contacts/{ANNE}", headers=reader)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["scope"] == "config"


@pytest.mark.parametrize(
    "params", [{"kind": "everything"}, {"limit": "0"}, {"limit": "201"}, {"tenant_id": "t" * 101}]
)
async def test_the_operator_s_list_refuses_bad_filters(api: Api, params: dict[str, str]) -> None:
    response = await api.client.get("/admin/erasures", params=params, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    tenant_key = (await api.create_tenant("acme"))[1]
    assert (await api.client.get("/admin/erasures", headers=tenant_key)).status_code in (401, 403)
