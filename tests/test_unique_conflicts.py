"""Where two writers meet on a unique key, the service catches the engine's UniqueViolation
and answers as the design says: a replay, an exchange of provider ids, a call already linked.
Each race is made certain here by letting the second writer miss the first one's row in its
look-up before the write, as a concurrent request would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ids import now_iso
from gateway.providers.base import SendResult
from gateway.store import calls as call_store
from gateway.store import messages as store
from tests.conftest import TWILIO, Api, running_api
from tests.test_messages_api import CLIENT, count_messages, sms_tenant

SID = "SM" + "7" * 32


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


def miss_once(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    """The first call of `module.name` finds nothing (the other writer has not committed
    yet); later calls find what is there."""
    real = getattr(module, name)
    calls = 0

    async def racing(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real(*args)

    monkeypatch.setattr(module, name, racing)


async def test_a_send_racing_past_the_replay_check_is_answered_as_the_replay(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await sms_tenant(api)
    headers = {**key, "Idempotency-Key": "order-7"}
    body = {"to": CLIENT, "body": "Commande 7 confirmée"}
    first = await api.client.post("/api/channels/sms/send", headers=headers, json=body)
    assert first.status_code == 202
    miss_once(monkeypatch, store, "get_by_idempotency_key")
    second = await api.client.post("/api/channels/sms/send", headers=headers, json=body)
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert await count_messages(api) == 1


async def twins_one_guessed(api: Api) -> tuple[str, Any]:
    """Two identical messages: the first `sent` with SID on a reconciliation's guess, the
    second claimed for sending (its row as the dispatcher holds it)."""
    key = await sms_tenant(api)
    ids = []
    for _ in range(2):
        accepted = await api.client.post(
            "/api/channels/sms/send", headers=key, json={"to": CLIENT, "body": "Rappel"}
        )
        ids.append(accepted.json()["id"])
    db = api.gateway.db
    [first] = await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10))
    assert first["id"] == ids[0]  # its twin waits while it is in flight
    await db.write_fn(
        lambda c: store.move(c, ids[0], "sent", {"provider_message_id": SID, "sent_at": now_iso()})
    )
    [second] = await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10))
    assert second["id"] == ids[1]
    return ids[0], second


async def test_the_provider_naming_a_guessed_id_takes_it_from_the_twin(api: Api) -> None:
    guessed, row = await twins_one_guessed(api)
    result = SendResult("twilio", SID, "queued", num_segments=1)
    assert await api.gateway.dispatcher._record_sent(row, result, source="dispatcher")
    db = api.gateway.db
    mine = await db.read_fn(lambda c: store.find_by_id(c, row["id"]))
    twin = await db.read_fn(lambda c: store.find_by_id(c, guessed))
    assert (mine["status"], mine["provider_message_id"]) == ("sent", SID)
    # the twin was only sent on a guess: it is looked up again
    assert (twin["status"], twin["provider_message_id"]) == ("sending", None)
    assert twin["needs_reconciliation"] == 1


async def test_a_reconciliation_leaves_an_id_a_twin_took_meanwhile(api: Api) -> None:
    guessed, row = await twins_one_guessed(api)
    result = SendResult("twilio", SID, "queued", num_segments=1)
    dispatcher = api.gateway.dispatcher
    assert not await dispatcher._record_sent(row, result, source="dispatcher", reconciled=True)
    twin = await api.gateway.db.read_fn(lambda c: store.find_by_id(c, guessed))
    assert (twin["status"], twin["provider_message_id"]) == ("sent", SID)


async def test_a_vapi_call_linked_meanwhile_is_left_as_it_is(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = await api.create_tenant("acme")
    db = api.gateway.db
    for sid in ("CA-first", "CA-retry"):
        await db.write_fn(
            lambda c, sid=sid: call_store.insert_call(
                c, {"tenant_id": tenant["id"], "call_sid": sid}
            )
        )
    await db.write_fn(
        lambda c: call_store.update_call_by_sid(c, "CA-first", {"vapi_call_id": "vapi-1"})
    )
    miss_once(monkeypatch, call_store, "get_call_by_vapi_id")
    await api.gateway.voice.link_vapi_call(tenant["id"], "CA-retry", "vapi-1")  # no error
    retry = await call_store.get_call_by_sid(db, "CA-retry")
    assert retry is not None and retry["vapi_call_id"] is None
    linked = await call_store.get_call_by_vapi_id(db, "vapi-1")
    assert linked is not None and linked["call_sid"] == "CA-first"
