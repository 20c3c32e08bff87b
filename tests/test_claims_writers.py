"""Claims of due work with several writers: on PostgreSQL, several transactions (one engine
with many write connections, or several engines: instances) claim due messages at once and
each row is handed out once, twins one at a time; a claim is a lease, and a lease that runs
out is taken over for reconciliation, never sent again blindly."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import Settings
from gateway.ids import later_iso, now_iso
from gateway.providers.base import ProviderError
from gateway.store import messages as store
from gateway.store.engine import Connection, Engine
from gateway.store.postgres import PostgresEngine
from tests.conftest import TWILIO, Api, running_api
from tests.test_messages_api import sms_tenant

CLIENT = "+33612345678"


@pytest.fixture
async def api(make_settings: Callable[..., Settings], postgres_url: str) -> AsyncIterator[Api]:
    async with running_api(make_settings(DATABASE_URL=postgres_url, **TWILIO)) as running:
        yield running


async def accept(api: Api, key: dict[str, str], plan: list[tuple[str, str]]) -> list[str]:
    ids = []
    for to, body in plan:
        response = await api.client.post(
            "/api/channels/sms/send", headers=key, json={"to": to, "body": body}
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


async def engines(url: str, count: int, writers: int) -> list[PostgresEngine]:
    started = []
    for _ in range(count):
        engine = PostgresEngine(url, write_connections=writers, read_connections=1)
        await asyncio.to_thread(engine.start)
        started.append(engine)
    return started


async def claim_everything(pool: list[PostgresEngine], rounds: int) -> list[list[Any]]:
    """Every engine claims in small batches, all at once, `rounds` times each."""

    async def claimer(engine: Engine) -> list[Any]:
        got: list[Any] = []
        for _ in range(rounds):
            got += await engine.write_fn(lambda c: store.claim_due(c, now_iso(), 5))
        return got

    # four claimers per engine: concurrent transactions inside one instance too
    return await asyncio.gather(*(claimer(e) for e in pool for _ in range(4)))


async def test_concurrent_claims_hand_each_message_out_once(api: Api, postgres_url: str) -> None:
    key = await sms_tenant(api)
    ids = await accept(api, key, [(f"+336123{n:05d}", f"message {n}") for n in range(120)])
    pool = await engines(postgres_url, count=3, writers=4)
    try:
        claims = await claim_everything(pool, rounds=10)
    finally:
        for engine in pool:
            await engine.close()
    handed = Counter(row["id"] for got in claims for row in got)
    assert set(handed) == set(ids), "every due message was claimed"
    assert max(handed.values()) == 1, "none twice"
    rows = await api.gateway.db.fetchall("SELECT status, attempts FROM channel_messages_log")
    assert {(r["status"], r["attempts"]) for r in rows} == {("sending", 1)}


async def test_concurrent_claims_take_one_twin_at_a_time(api: Api, postgres_url: str) -> None:
    """Messages the provider cannot tell apart (same recipient, sender and text) are sent one
    after the other, so a lost answer can always be matched; with several writers each could
    otherwise see the other twin still queued and claim its own."""
    key = await sms_tenant(api)
    plan = [(f"+336124{g:05d}", f"twin {g}") for g in range(20) for _ in range(4)]
    await accept(api, key, plan)
    pool = await engines(postgres_url, count=3, writers=4)
    try:
        claims = await claim_everything(pool, rounds=3)
    finally:
        for engine in pool:
            await engine.close()
    per_group = Counter((row["to_address"], row["body"]) for got in claims for row in got)
    assert set(per_group.values()) == {1}, "one twin of each group in flight"
    assert len(per_group) == 20


async def test_a_claim_whose_lease_ran_out_is_taken_over_for_reconciliation(api: Api) -> None:
    key = await sms_tenant(api)
    [message_id] = await accept(api, key, [(CLIENT, "hello")])
    db = api.gateway.db
    # an instance claims it, then dies: its lease runs out unrenewed
    [first] = await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10, later_iso(-1)))
    assert not first["needs_reconciliation"]

    [taken] = await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10, later_iso(60)))

    assert taken["id"] == message_id
    assert taken["needs_reconciliation"] == 1, "looked up at the provider, not sent again"
    assert taken["attempts"] == 1, "the same attempt"
    found = (await api.client.get(f"/api/messages/{message_id}", headers=key)).json()
    assert any(
        e["payload"].get("error") == "the claim of another instance ran out"
        for e in found["events"]
    )
    assert taken["claim_id"] != first["claim_id"], "a claim of its own"
    # the dead instance's lease is not renewed any more once taken over
    stale = {message_id: first["claim_id"]}
    renewed = await db.write_fn(lambda c: store.renew_leases(c, stale, later_iso(60)))
    assert renewed == set()


async def test_an_instance_whose_claim_was_taken_over_cannot_undo_the_newer_claim(
    api: Api,
) -> None:
    """The instance that lost its claim (it froze past its lease) wakes up and acts on what
    it knew: its requeue, its "outcome unknown", its failure, its failover switch must not
    land on the row another instance claimed since — that is how a message would be sent
    twice (the stale "not found at the provider: send it" requeueing a send in flight)."""
    key = await sms_tenant(api)
    [message_id] = await accept(api, key, [(CLIENT, "hello")])
    db = api.gateway.db
    dispatcher = api.gateway.dispatcher
    [stale] = await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10, later_iso(-1)))
    [taken] = await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10, later_iso(60)))
    assert taken["id"] == message_id

    await dispatcher._requeue_absent(stale)
    await dispatcher._mark_unknown(stale, ProviderError("unknown", "late"))
    await dispatcher._retry_or_fail(stale, ProviderError("transient", "late"))
    await dispatcher._fail(stale, ProviderError("permanent", "late"))

    now = await db.read_fn(lambda c: store.find_by_id(c, message_id))
    assert (now["status"], now["claim_id"]) == ("sending", taken["claim_id"])
    assert now["next_attempt_at"] == taken["next_attempt_at"], "the newer lease stands"
    assert now["failed_at"] is None


async def test_leases_in_work_are_renewed_and_never_claimed_by_another(api: Api) -> None:
    key = await sms_tenant(api)
    ids = await accept(api, key, [(CLIENT, "one"), ("+33612345679", "two")])
    db = api.gateway.db
    claimed = await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10, later_iso(60)))
    assert {r["id"] for r in claimed} == set(ids)

    claims = {r["id"]: r["claim_id"] for r in claimed}

    def renew(conn: Connection) -> set[str]:
        return store.renew_leases(conn, claims, later_iso(120))

    assert await db.write_fn(renew) == set(ids)
    assert await db.write_fn(lambda c: store.claim_due(c, now_iso(), 10)) == []


async def test_a_dispatcher_sends_nothing_on_a_claim_it_could_not_renew(api: Api) -> None:
    """An instance frozen (or cut off from the database) for most of a lease may have lost
    its claim to another instance: it starts no request on it."""
    key = await sms_tenant(api)
    [message_id] = await accept(api, key, [(CLIENT, "late")])
    dispatcher = api.gateway.dispatcher
    [row] = await api.gateway.db.write_fn(lambda c: store.claim_due(c, now_iso(), 10))
    # renewed last a whole lease ago
    stale = time.monotonic() - dispatcher.options.lease
    dispatcher._leases[message_id] = (row["claim_id"], stale)
    outcome = await dispatcher._send(row)
    assert isinstance(outcome, ProviderError) and outcome.kind == "unknown"
    found = (await api.client.get(f"/api/messages/{message_id}", headers=key)).json()
    # untouched: still this claim's, for whoever takes it over to reconcile
    assert (found["status"], found["provider_message_id"]) == ("sending", None)
    assert found["failed_at"] is None
