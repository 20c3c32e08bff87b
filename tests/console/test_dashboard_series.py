"""The analytics behind the dashboard that the JSON API did not have: a period day by day
(`analytics.daily_delivery`, `rollups.counts`), with days that are midnight to midnight
where the tenant is (25 hours on the day summer time ends), periods longer than one
statement can bind, and no other tenant's rows; and the query plans that keep it and the
message aggregates free of a sort over the period's rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from typing import Any

from gateway.db import TenantDB
from gateway.services import analytics
from gateway.store import rollups
from tests.conftest import Api

_ids = iter(range(1_000_000))


async def _messages(api: Api, tenant_id: str, *rows: tuple[str, str, str]) -> None:
    """(created_at, status, direction) rows of outbound SMS."""

    def write(conn: sqlite3.Connection) -> None:
        for created_at, status, direction in rows:
            conn.execute(
                "INSERT INTO channel_messages_log (id, tenant_id, channel, direction, to_address, "
                "message_type, status, metadata, created_at, updated_at) VALUES (?, ?, 'sms', ?, "
                "'+33611111111', 'transactional', ?, '{}', ?, ?)",
                (f"msg_{next(_ids):06d}", tenant_id, direction, status, created_at, created_at),
            )

    await api.gateway.db.write_fn(write)


async def _tenant(api: Api, slug: str, timezone: str = "Europe/Paris") -> str:
    response = await api.client.post(
        "/admin/tenants",
        json={"name": slug.title(), "slug": slug, "timezone": timezone},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["tenant"]["id"])


def _db(api: Api, tenant_id: str) -> TenantDB:
    return TenantDB(api.gateway.db, tenant_id)


async def test_days_are_local_and_the_day_summer_time_ends_has_25_hours(api: Api) -> None:
    paris = await _tenant(api, "paris")
    other = await _tenant(api, "other")
    await _messages(
        api,
        paris,
        # 25 Oct, Paris (UTC+2): 21:59 UTC is 23:59
        ("2025-10-25T21:59:00.000Z", "delivered", "outbound"),
        # 26 Oct: 22:00 UTC on the 25th is 00:00; 22:30 UTC on the 26th is 23:30 (UTC+1 now)
        ("2025-10-25T22:00:00.000Z", "delivered", "outbound"),
        ("2025-10-26T22:30:00.000Z", "failed", "outbound"),
        ("2025-10-26T12:00:00.000Z", "received", "inbound"),  # inbound: not counted
        # 27 Oct: 23:00 UTC on the 26th is midnight
        ("2025-10-26T23:00:00.000Z", "read", "outbound"),
    )
    # the same instants for another tenant: must not count
    await _messages(api, other, *[("2025-10-26T10:00:00.000Z", "failed", "outbound")] * 5)
    period = analytics.resolve_period(date(2025, 10, 25), date(2025, 10, 28), "Europe/Paris")
    days = await analytics.daily_delivery(_db(api, paris), period, "Europe/Paris")
    assert [(d["day"], d["start"], d["end"]) for d in days] == [
        ("2025-10-25", "2025-10-24T22:00:00.000Z", "2025-10-25T22:00:00.000Z"),
        ("2025-10-26", "2025-10-25T22:00:00.000Z", "2025-10-26T23:00:00.000Z"),
        ("2025-10-27", "2025-10-26T23:00:00.000Z", "2025-10-27T23:00:00.000Z"),
    ]
    assert [(d["total"], d["delivered"], d["failed"], d["delivery_rate"]) for d in days] == [
        (1, 1, 0, 100.0),
        (2, 1, 1, 50.0),
        (1, 1, 0, 100.0),
    ]


async def test_a_day_without_messages_has_no_rate_and_a_period_may_end_mid_day(
    api: Api,
) -> None:
    tenant_id = await _tenant(api, "utc", timezone="UTC")
    await _messages(
        api,
        tenant_id,
        ("2025-11-01T10:00:00.000Z", "delivered", "outbound"),
        ("2025-11-03T09:00:00.000Z", "sent", "outbound"),
        ("2025-11-03T13:00:00.000Z", "delivered", "outbound"),  # after the period's end
    )
    period = analytics.Period(
        datetime(2025, 11, 1, tzinfo=UTC), datetime(2025, 11, 3, 12, tzinfo=UTC)
    )
    days = await analytics.daily_delivery(_db(api, tenant_id), period, "UTC")
    assert [(d["day"], d["total"], d["delivery_rate"]) for d in days] == [
        ("2025-11-01", 1, 100.0),
        ("2025-11-02", 0, None),
        ("2025-11-03", 1, 0.0),
    ]
    assert days[-1]["end"] == "2025-11-03T12:00:00.000Z"


async def test_a_period_longer_than_one_statement_binds(api: Api) -> None:
    """D1 binds at most 100 parameters: 90 days a statement, in order, none lost at the seams."""
    tenant_id = await _tenant(api, "long", timezone="UTC")
    # one message on days 1, 90, 91 and 200 of the period (2025-01-01 is day 1)
    days_with = {1: "2025-01-01", 90: "2025-03-31", 91: "2025-04-01", 200: "2025-07-19"}
    await _messages(
        api,
        tenant_id,
        *[(f"{day}T12:00:00.000Z", "delivered", "outbound") for day in days_with.values()],
    )
    period = analytics.resolve_period(date(2025, 1, 1), date(2025, 12, 31), "UTC")
    days = await analytics.daily_delivery(_db(api, tenant_id), period, "UTC")
    assert len(days) == 364
    assert [n + 1 for n, d in enumerate(days) if d["total"]] == sorted(days_with)
    assert [d["day"] for d in days if d["total"]] == list(days_with.values())
    assert days[89]["day"] == "2025-03-31" and days[90]["day"] == "2025-04-01"


async def _plan(api: Api, sql: str, params: dict[str, Any]) -> list[str]:
    rows = await api.gateway.db.fetchall("EXPLAIN QUERY PLAN " + sql, params)
    return [str(row["detail"]) for row in rows]


async def test_live_ranges_read_index_ranges_without_sorting(api: Api) -> None:
    """Each range read from the messages (a period's edges, its dirty hours, the hours
    since the last rollup) is a range of the covering index, read once: a GROUP BY over the
    period's rows (a temporary B-tree fed every row) is what made the largest tenant's
    metrics slow (bench/console.py)."""
    ranges = {f"lo{i}": f"2025-11-0{i + 1}T00:00:00.000Z" for i in range(3)}
    ranges |= {f"hi{i}": f"2025-11-0{i + 2}T00:00:00.000Z" for i in range(3)}
    sql, _ = rollups.live_sql(3, ("total", "delivered", "failed"), {}, "sqlite")
    details = await _plan(api, sql, {"tenant_id": "ten_x", **ranges})
    covering = (
        "SEARCH channel_messages_log USING COVERING INDEX ix_messages_analytics "
        "(tenant_id=? AND created_at>? AND created_at<?)"
    )
    assert details.count(covering) == 3
    assert not any("TEMP B-TREE" in d for d in details)


async def test_channel_breakdown_is_message_metrics_by_channel(api: Api) -> None:
    tenant_id = await _tenant(api, "money")
    other = await _tenant(api, "other-money")

    def write(conn: sqlite3.Connection) -> None:
        rows = [
            (tenant_id, "sms", "2025-11-02T10:00:00.000Z", "delivered", 0.07, 0.05, 0.02),
            (tenant_id, "sms", "2025-11-03T10:00:00.000Z", "failed", 0.07, 0.09, -0.02),
            (tenant_id, "email", "2025-11-03T11:00:00.000Z", "sent", 0.0, 0.0, 0.0),
            (tenant_id, "sms", "2025-10-20T10:00:00.000Z", "delivered", 0.07, 0.05, 0.02),
            (other, "sms", "2025-11-03T10:00:00.000Z", "delivered", 50.0, 90.0, -40.0),
        ]
        for owner, channel, created_at, status, billed, cost, margin in rows:
            conn.execute(
                "INSERT INTO channel_messages_log (id, tenant_id, channel, direction, "
                "to_address, message_type, status, billed_cost, provider_cost, margin, "
                "metadata, created_at, updated_at) VALUES (?, ?, ?, 'outbound', 'x', "
                "'transactional', ?, ?, ?, ?, '{}', ?, ?)",
                (
                    f"msg_{next(_ids):06d}",
                    owner,
                    channel,
                    status,
                    billed,
                    cost,
                    margin,
                    created_at,
                    created_at,
                ),
            )

    await api.gateway.db.write_fn(write)
    period = analytics.resolve_period(date(2025, 11, 1), date(2025, 12, 1), "Europe/Paris")
    metrics = await analytics.message_metrics(
        _db(api, tenant_id), period, {"channel": None, "message_type": None, "agent": None}
    )
    channels = await analytics.channel_breakdown(_db(api, tenant_id), period)
    assert channels == metrics["current_period"]["by_channel"]
    assert [(c["channel"], c["count"], c["revenue"], c["margin"]) for c in channels] == [
        ("email", 1, 0.0, 0.0),
        ("sms", 2, 0.14, 0.0),
    ]
