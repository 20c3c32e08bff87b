"""The analytics rollups (gateway/services/rollups.py, rollup_job.py, migration 0013): a
tenant's message figures read from hour and day rows where they cover a period are the
figures read from every message, before and after messages of closed hours change, and the
job brings the rows back in line with the messages.

Each comparison takes the answers of the API (and of the console's services) with no rollup
at all as the reference: they are the same SQL the analytics ran before there were rollups
(tests/test_analytics.py works those figures out by hand)."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.ids import iso
from gateway.services import analytics, rollups
from gateway.services.rollup_job import MARGIN, RollupJob
from gateway.store import rollups as store
from gateway.store.tenant_scope import TenantDB
from tests.conftest import Api
from tests.test_analytics import insert
from tests.test_transfer import cli_env, gateway_cli

__all__ = ["cli_env"]  # a fixture, used by name

NOW = datetime.now(UTC)
TODAY = NOW.date()
STATUSES = ("queued", "sending", "sent", "delivered", "read", "undelivered", "failed", "canceled")
TYPES = ("transactional", "marketing", "notification", "appointment_reminder")
AGENTS = ("sara", "max", None)


def messages(rng: random.Random, count: int, days: int) -> list[dict[str, Any]]:
    """`count` messages spread over the last `days` days up to now, some in this hour."""
    rows = []
    for n in range(count):
        if n % 25 == 0:
            created = NOW - timedelta(seconds=rng.uniform(0, 600))  # the current hour, mostly
        else:
            created = NOW - timedelta(seconds=rng.uniform(0, days * 86400))
        channel = rng.choice(("sms", "sms", "email", "whatsapp"))
        status = rng.choice(STATUSES)
        billed = rng.choice((None, round(rng.uniform(0, 0.3), 4)))
        cost = None if billed is None else rng.choice((None, round(rng.uniform(0, 0.3), 4)))
        row: dict[str, Any] = {
            "created_at": iso(created),
            "channel": channel,
            "direction": "inbound" if rng.random() < 0.1 else "outbound",
            "to_address": f"+3361234{rng.randrange(60):04d}"
            if channel != "email"
            else f"client{rng.randrange(30)}@example.com",
            "message_type": rng.choice(TYPES),
            "agent": rng.choice(AGENTS),
            "status": status if rng.random() > 0.1 else "received",
            "character_count": rng.choice((None, rng.randrange(1, 900))),
            "num_segments": rng.choice((None, rng.randrange(1, 6))),
            "billed_cost": billed,
            "provider_cost": cost,
            "margin": None if cost is None or billed is None else round(billed - cost, 4),
            "call_id": rng.choice((None, None, "call_1")),
        }
        if row["status"] == "received":
            row["direction"] = "inbound"
        if status in ("delivered", "read"):
            sent = created + timedelta(milliseconds=rng.randrange(0, 5000))
            row["sent_at"] = iso(sent)
            row["delivered_at"] = iso(sent + timedelta(milliseconds=rng.randrange(1, 90_000)))
        rows.append(row)
    return rows


def queries() -> list[dict[str, str]]:
    start, end = TODAY - timedelta(days=9), TODAY + timedelta(days=1)
    partial = (NOW - timedelta(days=6, minutes=17)).replace(microsecond=0)
    return [
        {"start": start.isoformat(), "end": end.isoformat()},
        {"start": (TODAY - timedelta(days=4)).isoformat(), "end": TODAY.isoformat()},
        {"start": partial.isoformat(), "end": (NOW - timedelta(hours=3, minutes=5)).isoformat()},
        {"start": start.isoformat(), "end": end.isoformat(), "channel": "sms"},
        {"start": start.isoformat(), "end": end.isoformat(), "message_type": "marketing"},
        {"start": start.isoformat(), "end": end.isoformat(), "agent": "sara"},
    ]


async def answers(api: Api, tenant_id: str, key: dict[str, str]) -> list[Any]:
    """What the tenant sees: message metrics, money losers, the console's series and money."""
    found: list[Any] = []
    for query in queries():
        response = await api.client.get("/api/metrics/messages", params=query, headers=key)
        assert response.status_code == 200, response.text
        found.append(response.json())
    query = queries()[0]
    response = await api.client.get("/api/metrics/unprofitable", params=query, headers=key)
    assert response.status_code == 200, response.text
    found.append(response.json())
    tdb = TenantDB(api.gateway.db, tenant_id)
    for days, zone in ((10, "Europe/Paris"), (3, "Asia/Kolkata"), (10, "UTC")):
        period = analytics.resolve_period(
            TODAY - timedelta(days=days), TODAY + timedelta(days=1), zone
        )
        found.append(await analytics.daily_delivery(tdb, period, zone))
        found.append(await analytics.channel_breakdown(tdb, period))
    return found


async def live_answers(api: Api, tenant_id: str, key: dict[str, str]) -> list[Any]:
    """The answers read from the messages alone: the tenant's rollup state put aside."""
    db = api.gateway.db
    saved = await db.fetchall(
        "SELECT complete_before, updated_at FROM message_rollup_state WHERE tenant_id = :t",
        {"t": tenant_id},
    )
    await db.execute_write(
        "DELETE FROM message_rollup_state WHERE tenant_id = :t", {"t": tenant_id}
    )
    try:
        return await answers(api, tenant_id, key)
    finally:
        for row in saved:
            await db.execute_write(
                "INSERT INTO message_rollup_state (tenant_id, complete_before, updated_at) "
                "VALUES (:t, :c, :u)",
                {"t": tenant_id, "c": row["complete_before"], "u": row["updated_at"]},
            )


async def seeded(api: Api, seed: int = 1) -> tuple[str, dict[str, str], str]:
    rng = random.Random(seed)
    created, key = await api.create_tenant("rolled")
    other, _ = await api.create_tenant("neighbour")
    await insert(api, "channel_messages_log", created["id"], *messages(rng, 400, 12))
    await insert(api, "channel_messages_log", other["id"], *messages(rng, 150, 12))
    return created["id"], key, other["id"]


async def test_rolled_up_figures_are_the_figures_of_the_messages(api: Api) -> None:
    tenant_id, key, _ = await seeded(api)
    before = await answers(api, tenant_id, key)  # nothing rolled up yet: all live
    now = datetime.now(UTC)  # one clock for both catch-ups: no hour closes between them
    steps = await RollupJob(api.gateway.db).catch_up(now)
    assert steps > 0
    rows = await api.gateway.db.fetchone(
        "SELECT COUNT(*) AS n FROM message_day_rollups WHERE tenant_id = :t", {"t": tenant_id}
    )
    assert rows["n"] > 0
    assert await answers(api, tenant_id, key) == before
    assert await RollupJob(api.gateway.db).catch_up(now) == 0  # nothing more to do


async def test_the_figures_come_from_the_rollups_once_they_are_computed(api: Api) -> None:
    """A figure added to the rollup rows alone shows: the period is not read from the
    messages (a bad row would show too: the job's own rows must be right, tests above)."""
    tenant_id, key, _ = await seeded(api)
    await RollupJob(api.gateway.db).catch_up()
    query = {"start": (TODAY - timedelta(days=9)).isoformat(), "end": TODAY.isoformat()}
    url = "/api/metrics/messages"
    total = (await api.client.get(url, params=query, headers=key)).json()["current_period"]
    day = (TODAY - timedelta(days=5)).isoformat()
    await api.gateway.db.execute_write(
        "UPDATE message_day_rollups SET total = total + 1000 WHERE tenant_id = :t AND day = :d "
        "AND channel = 'sms' AND message_type = 'transactional'",
        {"t": tenant_id, "d": day},
    )
    after = (await api.client.get(url, params=query, headers=key)).json()["current_period"]
    assert after["total"] == total["total"] + 1000
    # the series by local day reads hours: the day row changes nothing there
    tdb = TenantDB(api.gateway.db, tenant_id)
    period = analytics.resolve_period(TODAY - timedelta(days=9), TODAY, "Europe/Paris")
    series = await analytics.daily_delivery(tdb, period, "Europe/Paris")
    row = await api.gateway.db.fetchone(
        "SELECT hour, channel, message_type FROM message_hour_rollups WHERE tenant_id = :t "
        "AND hour >= :h0 AND hour < :h1 ORDER BY hour LIMIT 1",
        {"t": tenant_id, "h0": f"{day}T00", "h1": f"{day}T20"},
    )
    await api.gateway.db.execute_write(
        "UPDATE message_hour_rollups SET total = total + 7 WHERE tenant_id = :t AND hour = :h "
        "AND channel = :c AND message_type = :m",
        {"t": tenant_id, "h": row["hour"], "c": row["channel"], "m": row["message_type"]},
    )
    changed = await analytics.daily_delivery(tdb, period, "Europe/Paris")
    expected = [r["total"] + (7 if r["day"] == day else 0) for r in series]
    assert [r["total"] for r in changed] == expected


async def test_changes_to_closed_hours_are_read_live_until_the_job_computes_them(
    api: Api,
) -> None:
    tenant_id, key, other = await seeded(api)
    job = RollupJob(api.gateway.db)
    await job.catch_up()
    db = api.gateway.db
    neighbour_marks = "SELECT hour FROM message_rollup_dirty WHERE tenant_id = :t ORDER BY hour"
    # (a seeded row of an hour that ended while the test ran is marked, and rightly so)
    marked_before = [r[0] for r in await db.fetchall(neighbour_marks, {"t": other})]
    old = iso(NOW - timedelta(days=2))
    # status callbacks, late prices, an erasure-like delete and a late insert, all in
    # hours the rollups hold already
    await db.execute_write(
        "UPDATE channel_messages_log SET status = 'delivered', sent_at = created_at, "
        "delivered_at = created_at WHERE tenant_id = :t AND status = 'sent' AND created_at < :old",
        {"t": tenant_id, "old": old},
    )
    await db.execute_write(
        "UPDATE channel_messages_log SET billed_cost = 0.5, provider_cost = 0.9, margin = -0.4 "
        "WHERE tenant_id = :t AND margin IS NULL AND created_at < :old",
        {"t": tenant_id, "old": old},
    )
    await db.execute_write(
        "DELETE FROM channel_messages_log WHERE tenant_id = :t AND channel = 'email' "
        "AND created_at < :old",
        {"t": tenant_id, "old": old},
    )
    late = {"created_at": iso(NOW - timedelta(days=3)), "to_address": "+33699999999"}
    await insert(api, "channel_messages_log", tenant_id, late | {"status": "delivered"})
    dirty = await db.fetchall(
        "SELECT d.hour FROM message_rollup_dirty d JOIN message_rollup_state s "
        "ON s.tenant_id = d.tenant_id WHERE d.tenant_id = :t "
        "AND d.hour < substr(s.complete_before, 1, 13)",
        {"t": tenant_id},
    )  # marks at or after complete_before (an hour that ended meanwhile) go with its step
    assert len(dirty) > 3
    # the neighbour's figures were not touched by any of it
    assert [r[0] for r in await db.fetchall(neighbour_marks, {"t": other})] == marked_before
    reference = await live_answers(api, tenant_id, key)
    assert await answers(api, tenant_id, key) == reference  # dirty hours read live
    outcome = await job.run()
    assert outcome["dirty_hours"] >= len(dirty)
    left = await db.fetchall(
        "SELECT d.hour FROM message_rollup_dirty d JOIN message_rollup_state s "
        "ON s.tenant_id = d.tenant_id WHERE d.tenant_id = :t "
        "AND d.hour < substr(s.complete_before, 1, 13)",
        {"t": tenant_id},
    )
    assert left == []
    assert await answers(api, tenant_id, key) == reference


async def test_writes_to_the_current_hour_mark_nothing(api: Api) -> None:
    """The price of the triggers on the hot path: one comparison, no write."""
    tenant_id, _, _ = await seeded(api)
    await RollupJob(api.gateway.db).catch_up()
    db = api.gateway.db
    now = {"created_at": iso(datetime.now(UTC)), "status": "queued"}
    await insert(api, "channel_messages_log", tenant_id, now)
    await db.execute_write(
        "UPDATE channel_messages_log SET status = 'sent' WHERE tenant_id = :t AND created_at = :c",
        {"t": tenant_id, "c": now["created_at"]},
    )
    marks = await db.fetchall(
        "SELECT hour FROM message_rollup_dirty WHERE tenant_id = :t", {"t": tenant_id}
    )
    this_hour = now["created_at"][:13]
    if datetime.now(UTC).strftime("%Y-%m-%dT%H") == this_hour:  # the hour did not turn meanwhile
        # (seeded rows of an hour that ended since the module's NOW may carry marks)
        assert this_hour not in {row["hour"] for row in marks}


async def test_the_job_works_in_bounded_steps_and_leaves_the_current_hours_alone(
    api: Api,
) -> None:
    tenant_id, key, _ = await seeded(api)
    reference = await answers(api, tenant_id, key)
    job = RollupJob(api.gateway.db, max_steps=3)
    first = await job.run()
    assert first["steps"] == 3
    assert first["behind"] >= 1
    runs = 1
    while (await job.run())["steps"] == 3:
        runs += 1
    assert runs > 3  # twelve days of two tenants, a day per step
    assert await answers(api, tenant_id, key) == reference
    states = await api.gateway.db.fetchall("SELECT complete_before FROM message_rollup_state")
    closed = rollups.floor_hour(datetime.now(UTC) - MARGIN)
    assert {row["complete_before"] for row in states} <= {iso(closed), iso(closed - rollups.HOUR)}
    hours = await api.gateway.db.fetchall("SELECT MAX(hour) AS h FROM message_hour_rollups")
    assert hours[0]["h"] < iso(closed)[:13]


async def test_a_deleted_tenant_leaves_no_rollups_or_marks(api: Api) -> None:
    tenant_id, _, other = await seeded(api)
    job = RollupJob(api.gateway.db)
    await job.catch_up()
    url = f"/admin/tenants/{tenant_id}?confirm=rolled"
    response = await api.client.delete(url, headers=api.admin)
    assert response.status_code in (200, 204), response.text
    await job.run()
    db = api.gateway.db
    for table in ("message_hour_rollups", "message_day_rollups", "message_rollup_dirty"):
        rows = await db.fetchall(
            f"SELECT tenant_id FROM {table} WHERE tenant_id = :t", {"t": tenant_id}
        )
        assert rows == [], table
    kept = await db.fetchall("SELECT 1 FROM message_day_rollups WHERE tenant_id = :t", {"t": other})
    assert kept


async def test_an_erased_contact_leaves_the_rollups_at_once(api: Api) -> None:
    tenant_id, key, _ = await seeded(api)
    await RollupJob(api.gateway.db).catch_up()
    contact = "+33612340007"
    hashed = store.recipient_hash(contact)

    async def hashes() -> set[int]:
        rows = await api.gateway.db.fetchall(
            "SELECT recipients FROM message_hour_rollups WHERE tenant_id = :t "
            "UNION ALL SELECT recipients FROM message_day_rollups WHERE tenant_id = :t",
            {"t": tenant_id},
        )
        return {h for row in rows for h in store.unpack(row["recipients"])}

    assert hashed in await hashes()
    response = await api.client.delete(f"/api/contacts/{contact}", headers=key)
    assert response.status_code == 200, response.text
    assert hashed not in await hashes()
    assert await answers(api, tenant_id, key) == await live_answers(api, tenant_id, key)


# -- how a period is cut ---------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_period_is_whole_days_whole_hours_and_live_edges() -> None:
    cut = rollups.plan(at("2026-11-01T09:30"), at("2026-11-05T14:10"), at("2026-11-05T12:00"))
    assert cut.days == [("2026-11-02", "2026-11-05")]
    assert cut.hours == [("2026-11-01T10", "2026-11-02T00"), ("2026-11-05T00", "2026-11-05T12")]
    assert cut.live == [
        ("2026-11-01T09:30:00.000Z", "2026-11-01T10:00:00.000Z"),
        ("2026-11-05T12:00:00.000Z", "2026-11-05T14:10:00.000Z"),
    ]


def test_a_dirty_hour_is_read_live_and_its_day_by_hours() -> None:
    dirty = ["2026-11-03T05", "2026-11-03T06", "2026-11-05T01"]
    cut = rollups.plan(
        at("2026-11-02T00:00"), at("2026-11-06T00:00"), at("2026-11-06T00:00"), dirty
    )
    assert cut.days == [("2026-11-02", "2026-11-03"), ("2026-11-04", "2026-11-05")]
    assert cut.hours == [
        ("2026-11-03T00", "2026-11-03T05"),
        ("2026-11-03T07", "2026-11-04T00"),
        ("2026-11-05T00", "2026-11-05T01"),
        ("2026-11-05T02", "2026-11-06T00"),
    ]
    assert cut.live == [
        ("2026-11-03T05:00:00.000Z", "2026-11-03T07:00:00.000Z"),
        ("2026-11-05T01:00:00.000Z", "2026-11-05T02:00:00.000Z"),
    ]


@pytest.mark.parametrize(
    ("complete_before", "live"),
    [(None, [("2026-11-02T00:00:00.000Z", "2026-11-03T00:00:00.000Z")]),
     ("2026-11-01T00:00", [("2026-11-02T00:00:00.000Z", "2026-11-03T00:00:00.000Z")])],
)  # fmt: skip
def test_nothing_rolled_up_for_the_period_reads_it_all_live(
    complete_before: str | None, live: list[tuple[str, str]]
) -> None:
    before = None if complete_before is None else at(complete_before)
    cut = rollups.plan(at("2026-11-02T00:00"), at("2026-11-03T00:00"), before)
    assert (cut.days, cut.hours, cut.live) == ([], [], live)


def test_a_series_by_local_day_reads_hours_only() -> None:
    # a Paris day in winter: 23:00 to 23:00 UTC
    cut = rollups.plan(
        at("2026-11-01T23:00"), at("2026-11-03T23:00"), at("2026-12-01T00:00"), days=False
    )
    assert cut.days == [] and cut.live == []
    assert cut.hours == [("2026-11-01T23", "2026-11-03T23")]


def test_distinct_recipients_are_the_union_of_the_sets_and_the_live_addresses() -> None:
    addresses = [f"+3361234{n:04d}" for n in range(3000)]
    recipients = rollups.Recipients()
    assert recipients.count() == 0
    # overlapping hours: 0-1999 and 1000-2999, and live addresses seen in both or in neither
    recipients.add_packed(store.pack(store.recipient_hash(a) for a in addresses[:2000]))
    recipients.add_packed(store.pack(store.recipient_hash(a) for a in addresses[1000:]))
    for address in (addresses[5], addresses[2500], "client@example.org", "client@example.org"):
        recipients.add_address(address)
    assert recipients.count() == 3001
    lone = rollups.Recipients()
    lone.add_address("+33612340000")
    assert lone.count() == 1


def test_gateway_rollups_brings_them_up_to_date(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "cli.sqlite3"
    code, out, err = gateway_cli(capsys, cli_env, "tenant", "create", "--slug", "cli-rolled",
                                 "--name", "Rolled", database=database)  # fmt: skip
    assert code == 0, err
    tenant_id = json.loads(out)["tenant"]["id"]
    with sqlite3.connect(database) as conn:
        rows = messages(random.Random(3), 50, 3)
        for n, row in enumerate(rows):
            row = {"id": f"msg_cli_{n}", "tenant_id": tenant_id, "metadata": "{}"} | row
            row["updated_at"] = row["created_at"]
            names, marks = ", ".join(row), ", ".join(f":{name}" for name in row)
            conn.execute(f"INSERT INTO channel_messages_log ({names}) VALUES ({marks})", row)
    code, out, err = gateway_cli(capsys, cli_env, "rollups", database=database)
    assert code == 0, err
    assert "analytics rollups up to date" in out
    with sqlite3.connect(database) as conn:
        (days,) = conn.execute("SELECT COUNT(*) FROM message_day_rollups").fetchone()
        (state,) = conn.execute("SELECT complete_before FROM message_rollup_state").fetchone()
    assert days > 0
    closed = rollups.floor_hour(datetime.now(UTC) - MARGIN)
    assert state in {iso(closed), iso(closed - rollups.HOUR)}  # the hour may turn meanwhile
    code, out, _ = gateway_cli(capsys, cli_env, "rollups", database=database)
    assert "(0 step(s))" in out
