"""Three gateway processes on one PostgreSQL database, as behind a load balancer: every
accepted message reaches the provider exactly once although one instance is SIGKILLed
mid-load (its claims are taken over when their leases run out, and reconciled), and 100
concurrent bookings of one slot spread over the three book it once."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from gateway.sandbox.server import ServerThread
from gateway.sandbox.twilio_api import TwilioSandbox
from tests.instances import all_messages, running_instances, sms_tenant
from tests.stack import ACCOUNT_SID, AUTH_TOKEN

pytestmark = pytest.mark.slow

MESSAGES = 150
# a send in flight this long has an answer that hangs (the emulator's hang_seconds, 3 s)
HANGING = 0.3


def plan() -> list[tuple[str, str, str]]:
    """(tenant, recipient, text): distinct messages and twins (the same recipient and text
    from both tenants on the shared number)."""
    items = []
    for i in range(MESSAGES):
        items.append(("acme", f"+336140{i:05d}", f"message {i:04d}"))
        if i % 4 == 0:
            items.append(("globex", f"+336140{i:05d}", f"message {i:04d}"))
    return items


def in_flight_of(database_url: str, pid: int) -> set[str]:
    """The sends the instance with that pid has claimed and not finished (its claim ids
    name it)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM channel_messages_log WHERE status = 'sending' "
            "AND needs_reconciliation = 0 AND claim_id LIKE %s",
            (f"clm_%:{pid}_%",),
        ).fetchall()
    return {str(row[0]) for row in rows}


def takeovers(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM message_events WHERE payload::text LIKE %s",
            ("%the claim of another instance ran out%",),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_killed_instance_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, postgres_url: str
) -> None:
    twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.05, hang_seconds=3)
    twilio.hang_every = 29  # answers lost on the way back, on top of the kill's
    items = plan()
    with (
        ServerThread(twilio.app) as emulator,
        running_instances(
            tmp_path,
            postgres_url,
            emulator.base_url,
            DISPATCH_LEASE_SECONDS="10",  # the dead instance's claims are taken over after it
            DISPATCH_PER_SENDER_RATE="150",
            DISPATCH_RECONCILE_SECONDS="1",
        ) as instances,
    ):
        members = instances.members
        clients = [httpx.AsyncClient(base_url=m.url, timeout=10) for m in members]
        try:
            keys = {
                slug: await sms_tenant(clients[0], instances.admin, slug)
                for slug in ("acme", "globex")
            }
            gate = asyncio.Semaphore(16)
            turn = itertools.count()
            killed = asyncio.Event()
            started = asyncio.Event()  # an instance answered a send: the load is under way

            async def accept(n: int, slug: str, to: str, body: str) -> str:
                """Round-robin over the instances; a request the dead instance cannot answer
                goes to the next one with the same Idempotency-Key, as a load balancer's
                client would retry it."""
                headers = {**keys[slug], "Idempotency-Key": f"load-{n}"}
                first = next(turn)
                async with gate:
                    for hop in range(len(clients)):
                        client = clients[(first + hop) % len(clients)]
                        try:
                            response = await client.post(
                                "/api/channels/sms/send",
                                headers=headers,
                                json={"to": to, "body": body},
                            )
                        except httpx.TransportError:
                            continue
                        assert response.status_code in (200, 202), response.text
                        started.set()
                        return str(response.json()["id"])
                raise AssertionError("no instance answered")

            async def kill_mid_load() -> None:
                """SIGKILL the third instance while it holds the claim of a send whose answer
                hangs (in flight for longer than a send takes): that claim is sure to outlive
                the kill, however fast the instance's other sends are answered. Once the
                load is under way every answer hangs until the kill, so the instance is sure
                to hold one, and the status callbacks of what is sent meanwhile are held: a
                callback would settle a dead instance's send before its lease runs out, and
                nothing would be left to take over."""
                victim = members[2].process
                assert victim is not None
                loop = asyncio.get_running_loop()
                await started.wait()
                twilio.hang_every, twilio.callback_delay = 1, 600.0
                first_seen: dict[str, float] = {}
                while True:
                    now = loop.time()
                    held = await asyncio.to_thread(in_flight_of, postgres_url, victim.pid)
                    first_seen = {i: first_seen.get(i, now) for i in held}
                    if any(now - since >= HANGING for since in first_seen.values()):
                        break
                    await asyncio.sleep(0.02)
                members[2].kill()
                twilio.hang_every, twilio.callback_delay = 29, 0.05
                killed.set()

            killer = asyncio.create_task(kill_mid_load())
            accepted = await asyncio.gather(*(accept(n, *item) for n, item in enumerate(items)))
            await asyncio.wait_for(killed.wait(), 60)
            await killer
            assert len(twilio.messages) < len(items), "the kill should land mid-dispatch"

            deadline = asyncio.get_running_loop().time() + 120
            while True:
                found = [m for key in keys.values() for m in await all_messages(clients[0], key)]
                unsettled = [m for m in found if m["status"] in ("queued", "sending")]
                if not unsettled:
                    break
                assert asyncio.get_running_loop().time() < deadline, unsettled[:3]
                await asyncio.sleep(0.2)
        finally:
            for client in clients:
                await client.aclose()

    assert len(set(accepted)) == len(items), "one message per Idempotency-Key"
    assert sorted(m["id"] for m in found) == sorted(accepted), "nothing lost"
    failures = [m["failure_reason"] for m in found if m["status"] == "failed"]
    statuses = Counter(m["status"] for m in found)
    assert set(statuses) <= {"sent", "delivered"}, (statuses, failures[:3])
    wanted = Counter((to, body) for _, to, body in items)
    at_emulator = Counter((m["to"], m["body"]) for m in twilio.messages)
    assert at_emulator == wanted, "each message sent once: twins twice, nothing more"
    sids = [m["provider_message_id"] for m in found]
    assert len(set(sids)) == len(sids) == len(twilio.messages), "one provider id per message"
    assert takeovers(postgres_url) > 0, "the dead instance's claims were taken over"


def a_bookable_morning() -> str:
    """10:00 in Paris on a weekday a few days ahead (inside the default opening hours)."""
    paris = ZoneInfo("Europe/Paris")
    day = datetime.now(UTC).astimezone(paris).date() + timedelta(days=3)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=paris).isoformat()


async def test_a_hundred_bookings_of_one_slot_over_three_instances_book_it_once(
    tmp_path: Path, postgres_url: str
) -> None:
    twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN)
    starts_at = a_bookable_morning()
    with (
        ServerThread(twilio.app) as emulator,
        running_instances(tmp_path, postgres_url, emulator.base_url) as instances,
    ):
        clients = [httpx.AsyncClient(base_url=m.url, timeout=30) for m in instances.members]
        try:
            created = await clients[0].post(
                "/admin/tenants", headers=instances.admin, json={"name": "Cabinet", "slug": "cab"}
            )
            assert created.status_code == 201, created.text
            key = {"Authorization": f"Bearer {created.json()['api_key']}"}
            free = await clients[1].get(
                "/api/availability", params={"date": starts_at[:10]}, headers=key
            )
            assert starts_at in free.json()["days"][0]["slots"], free.text

            async def book(n: int) -> httpx.Response:
                return await clients[n % 3].post(
                    "/api/appointments",
                    headers=key,
                    json={
                        "customer_name": f"Client {n}",
                        "customer_phone": f"+336150{n:05d}",
                        "starts_at": starts_at,
                    },
                )

            answers = await asyncio.gather(*(book(n) for n in range(100)))
            listed = await clients[2].get("/api/appointments", headers=key)
        finally:
            for client in clients:
                await client.aclose()
    codes = Counter(r.status_code for r in answers)
    assert codes == {201: 1, 409: 99}, [r.text for r in answers if r.status_code >= 500][:2]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"slot_taken"}
    booked = [a for a in listed.json()["appointments"] if a["status"] != "cancelled"]
    assert len(booked) == 1
