"""Analytics: message and call metrics with their comparison, one contact's timeline, the items
that lost money, the operator's per-tenant totals, and the indexes that keep them fast.

Every dataset is inserted with SQL and every expected figure is worked out by hand in the
comments next to it. A noisy second tenant with large figures in both periods is present in
every test: one of its rows leaking in would change the answers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.ids import iso, parse_iso
from gateway.store import analytics as store
from gateway.store import rollups
from tests.conftest import Api

# current period [Nov 1, Dec 1), previous [Oct 2, Nov 1): 30 days each
PERIOD = {"start": "2025-11-01T00:00:00Z", "end": "2025-12-01T00:00:00Z"}
SHARED_LINE = "+33939035761"
ANNE, BRUNO, CAMILLE, DAVID = "+33611111111", "+33622222222", "+33633333333", "+33644444444"

MESSAGE_DEFAULTS: dict[str, Any] = {
    "channel": "sms",
    "direction": "outbound",
    "to_address": ANNE,
    "message_type": "transactional",
    "status": "delivered",
    "metadata": "{}",
}
OUTCOMES = ("bridged", "fallback_dial")
CALL_DEFAULTS: dict[str, Any] = {
    "direction": "inbound",
    "from_number": ANNE,
    "to_number": SHARED_LINE,
    "status": "completed",
    "metadata": "{}",
}
_counter = iter(range(1_000_000))


def money(billed: float, cost: float | None = None, margin: float | None = None) -> dict[str, Any]:
    return {"billed_cost": billed, "provider_cost": cost, "margin": margin}


def msg(
    created_at: str, chars: int | None = None, *, delivered_in: float | None = None, **fields: Any
) -> dict[str, Any]:
    """A message row; with `delivered_in`, sent 1 s after creation and delivered that later."""
    row = {"created_at": created_at, "character_count": chars, **fields}
    if delivered_in is not None:
        sent = parse_iso(created_at) + timedelta(seconds=1)
        row |= {"sent_at": iso(sent), "delivered_at": iso(sent + timedelta(seconds=delivered_in))}
    return row


async def insert(api: Api, table: str, tenant_id: str | None, *rows: dict[str, Any]) -> None:
    defaults: dict[str, Any] = {
        "channel_messages_log": MESSAGE_DEFAULTS,
        "call_logs": CALL_DEFAULTS,
        "rendez_vous": {"customer_name": "Client", "customer_phone": ANNE, "source": "voice"},
        "tickets": {"subject": "Help"},
    }.get(table, {})

    def write(conn: sqlite3.Connection) -> None:
        for extra in rows:
            n = next(_counter)
            row = {"id": f"{table[:4]}_{n:06d}", "tenant_id": tenant_id, **defaults, **extra}
            if table != "qualified_prospects":
                row.setdefault("updated_at", row["created_at"])
            if table == "rendez_vous":
                row.setdefault("starts_at", f"2026-01-01T{n % 24:02d}:{n % 60:02d}:00.000Z")
                row.setdefault("ends_at", row["starts_at"])
            if table == "call_logs":
                row.setdefault("call_sid", f"CA{n:032d}")
            names = ", ".join(row)
            marks = ", ".join(f":{name}" for name in row)
            conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", row)

    await api.gateway.db.write_fn(write)


async def tenant(api: Api, slug: str) -> tuple[str, dict[str, str]]:
    created, key = await api.create_tenant(slug)
    return str(created["id"]), key


async def noisy_neighbour(api: Api) -> str:
    """Another tenant, active in both periods, with figures that would show if they leaked."""
    other, _ = await tenant(api, "noisy-neighbour")
    for when in ("2025-10-15T12:00:00.000Z", "2025-11-15T12:00:00.000Z"):
        # the same contact as the tests' tenant, every status, huge figures
        lost = money(9.0, 20.0, -11.0)
        rows = [
            msg(
                when,
                5000,
                to_address=ANNE,
                status=status,
                num_segments=40,
                call_id="call_x",
                **lost,
            )
            for status in ("delivered", "failed", "queued", "canceled")
        ]
        rows[0] |= {"sent_at": when, "delivered_at": "2025-12-31T00:00:00.000Z"}
        await insert(api, "channel_messages_log", other, *rows)
        calls = [
            {"created_at": when, "outcome": o, "duration_seconds": 999, **lost} for o in OUTCOMES
        ]
        await insert(api, "call_logs", other, *calls)
        await insert(api, "rendez_vous", other, {"created_at": when, "call_id": "call_x"})
        await insert(api, "qualified_prospects", other, {"created_at": when})
        await insert(api, "tickets", other, {"created_at": when})
    # a call no tenant could be found for
    await insert(api, "call_logs", None, {"created_at": "2025-11-15T12:00:00.000Z"})
    return other


def fields_of(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"]["code"] == "validation_failed"
    return [f["field"] for f in body["error"]["details"]["fields"]]


def rate_row(key: str, name: str, count: int, delivered: int, rate: float, *figures: float) -> Any:
    revenue, cost, margin = figures
    return {
        key: name,
        "count": count,
        "delivered": delivered,
        "delivery_rate": rate,
        "revenue": revenue,
        "cost": cost,
        "margin": margin,
    }


# -- message metrics ---------------------------------------------------------------------------


async def test_the_products_worked_example(api: Api) -> None:
    """000_…md: three SMS of 77, 85 and 31 characters, one delivered (in 3 s), one sent, one
    failed, billed 0.07 € each (0.05 provider + 0.02 margin)."""
    await noisy_neighbour(api)
    me, key = await tenant(api, "voipia")
    sms = {"num_segments": 1, **money(0.07, 0.05, 0.02)}
    await insert(
        api,
        "channel_messages_log",
        me,
        msg("2025-11-13T09:00:00.000Z", 77, to_address="+33612345678", delivered_in=3, **sms)
        | {"message_type": "appointment_reminder"},
        msg("2025-11-13T09:01:00.000Z", 85, to_address="+33698765432", status="sent", **sms)
        | {"message_type": "notification"},
        msg("2025-11-13T09:02:00.000Z", 31, to_address="+33600000000", status="failed", **sms),
    )
    response = await api.client.get("/api/metrics/messages", params=PERIOD, headers=key)
    assert response.status_code == 200, response.text
    current = response.json()["current_period"]
    assert current == {
        "total": 3,
        "delivered": 1,
        "failed": 1,
        "in_flight": 1,
        "canceled": 0,
        "delivery_rate": 33.33,
        "failure_rate": 33.33,
        "total_revenue": 0.21,
        "total_cost": 0.15,
        "total_margin": 0.06,
        "margin_percentage": 28.57,  # 0.06 / 0.21
        "avg_revenue_per_message": 0.07,
        "avg_cost_per_message": 0.05,
        "avg_margin_per_message": 0.02,
        "total_segments": 3,
        "avg_characters": 64.33,  # 193 / 3
        "min_characters": 31,
        "max_characters": 85,
        "unique_recipients": 3,
        "linked_to_calls": 0,
        "call_linkage_rate": 0.0,
        "avg_delivery_time_seconds": 3.0,
        "by_message_type": [
            rate_row("message_type", "appointment_reminder", 1, 1, 100.0, 0.07, 0.05, 0.02),
            rate_row("message_type", "notification", 1, 0, 0.0, 0.07, 0.05, 0.02),
            rate_row("message_type", "transactional", 1, 0, 0.0, 0.07, 0.05, 0.02),
        ],
        "by_channel": [rate_row("channel", "sms", 3, 1, 33.33, 0.21, 0.15, 0.06)],
    }


# Current period, outbound, in [Nov 1, Dec 1):
#   m1 sms appointment_reminder delivered  Anne    120 ch 1 seg 0.07/0.05/+0.02    4 s  call
#   m2 sms marketing            delivered  Bruno   200 ch 2 seg 0.14/0.1468/-0.0068 10.5 s
#   m3 sms marketing            undelivered Anne    50 ch 1 seg 0.07/0.045/+0.025
#   m4 sms transactional        queued     Camille  30 ch 1 seg 0.07/unpriced (last ms)
#   m5 whatsapp transactional   read       Anne     40 ch       0/0/0           2 s  call
#   m6 email notification       canceled   jean   1000 ch       0/0/0   (first ms: included)
#   m9 email transactional      failed     paul    500 ch       0/0/0
# Previous period [Oct 2, Nov 1):
#   p1 sms transactional delivered Anne  100 ch 1 seg 0.07/0.05/+0.02  6 s
#   p2 sms transactional delivered David  60 ch 1 seg 0.07/0.04/+0.03  2 s (first ms)
#   p3 sms marketing     failed    David  80 ch 1 seg 0.07/0.05/+0.02     (last ms)
FREE = money(0.0, 0.0, 0.0)
ONE, TWO = {"num_segments": 1}, {"num_segments": 2}
RICH = [
    msg("2025-11-02T09:59:59.000Z", 120, delivered_in=4, **ONE, **money(0.07, 0.05, 0.02))
    | {"message_type": "appointment_reminder", "call_id": "call_1", "agent": "louis"},
    msg("2025-11-10T07:59:59.000Z", 200, delivered_in=10.5, **TWO, **money(0.14, 0.1468, -0.0068))
    | {"to_address": BRUNO, "message_type": "marketing", "agent": "louis"},
    msg("2025-11-15T12:00:00.000Z", 50, status="undelivered", **ONE, **money(0.07, 0.045, 0.025))
    | {"message_type": "marketing", "sent_at": "2025-11-15T12:00:01.000Z", "agent": "arthur"},
    msg("2025-11-30T23:59:59.999Z", 30, to_address=CAMILLE, status="queued", **ONE, **money(0.07)),
    msg("2025-11-20T08:59:59.000Z", 40, delivered_in=2, channel="whatsapp", status="read", **FREE)
    | {"call_id": "call_2"},
    msg("2025-11-01T00:00:00.000Z", 1000, channel="email", to_address="jean@example.com", **FREE)
    | {"message_type": "notification", "status": "canceled"},
    msg("2025-11-25T10:00:00.000Z", 500, channel="email", to_address="paul@example.com", **FREE)
    | {"status": "failed"},
    # not counted: inbound, created at the end (exclusive), before the previous period
    msg("2025-11-05T10:00:00.000Z", 3, direction="inbound", status="received"),
    msg("2025-12-01T00:00:00.000Z", 7, **money(5.0)),
    msg("2025-10-01T23:59:59.999Z", 7, **money(5.0)),
    # previous period
    msg("2025-10-10T09:59:59.000Z", 100, delivered_in=6, **ONE, **money(0.07, 0.05, 0.02)),
    msg("2025-10-02T00:00:00.000Z", 60, delivered_in=2, **ONE, **money(0.07, 0.04, 0.03))
    | {"to_address": DAVID},
    msg("2025-10-31T23:59:59.999Z", 80, to_address=DAVID, status="failed", **ONE)
    | {"message_type": "marketing", **money(0.07, 0.05, 0.02)},
]

RICH_CURRENT = {
    "total": 7,
    "delivered": 3,  # m1, m2, m5 (read)
    "failed": 2,  # m3 (undelivered), m9
    "in_flight": 1,  # m4
    "canceled": 1,  # m6
    "delivery_rate": 42.86,  # 3/7
    "failure_rate": 28.57,  # 2/7
    "total_revenue": 0.35,  # 0.07 + 0.14 + 0.07 + 0.07
    "total_cost": 0.2418,  # 0.05 + 0.1468 + 0.045
    "total_margin": 0.0382,  # 0.02 - 0.0068 + 0.025
    "margin_percentage": 13.64,  # 0.0382 / 0.28 (m4's 0.07 has no margin yet)
    "avg_revenue_per_message": 0.05,  # 0.35 / 7
    "avg_cost_per_message": 0.0403,  # 0.2418 / 6 priced
    "avg_margin_per_message": 0.0064,  # 0.0382 / 6 = 0.006366…
    "total_segments": 5,
    "avg_characters": 277.14,  # 1940 / 7
    "min_characters": 30,
    "max_characters": 1000,
    "unique_recipients": 5,  # Anne, Bruno, Camille, jean, paul
    "linked_to_calls": 2,
    "call_linkage_rate": 28.57,
    "avg_delivery_time_seconds": 5.5,  # (4 + 10.5 + 2) / 3
}
RICH_PREVIOUS = {
    "total": 3,
    "delivered": 2,
    "failed": 1,
    "in_flight": 0,
    "canceled": 0,
    "delivery_rate": 66.67,
    "failure_rate": 33.33,
    "total_revenue": 0.21,
    "total_cost": 0.14,
    "total_margin": 0.07,
    "margin_percentage": 33.33,
    "avg_revenue_per_message": 0.07,
    "avg_cost_per_message": 0.0467,  # 0.14 / 3
    "avg_margin_per_message": 0.0233,  # 0.07 / 3
    "total_segments": 3,
    "avg_characters": 80.0,  # 240 / 3
    "min_characters": 60,
    "max_characters": 100,
    "unique_recipients": 2,
    "linked_to_calls": 0,
    "call_linkage_rate": 0.0,
    "avg_delivery_time_seconds": 4.0,  # (6 + 2) / 2
}
# (current - previous, and that as a % of |previous|), from the rounded figures above
RICH_COMPARISON = {
    "total": (4, 133.33),
    "delivered": (1, 50.0),
    "failed": (1, 100.0),
    "in_flight": (1, None),
    "canceled": (1, None),
    "delivery_rate": (-23.81, -35.71),  # -23.81 / 66.67
    "failure_rate": (-4.76, -14.28),  # -4.76 / 33.33
    "total_revenue": (0.14, 66.67),
    "total_cost": (0.1018, 72.71),
    "total_margin": (-0.0318, -45.43),
    "margin_percentage": (-19.69, -59.08),
    "avg_revenue_per_message": (-0.02, -28.57),
    "avg_cost_per_message": (-0.0064, -13.7),
    "avg_margin_per_message": (-0.0169, -72.53),
    "total_segments": (2, 66.67),
    "avg_characters": (197.14, 246.43),  # 246.425 rounds half up
    "min_characters": (-30, -50.0),
    "max_characters": (900, 900.0),
    "unique_recipients": (3, 150.0),
    "linked_to_calls": (2, None),
    "call_linkage_rate": (28.57, None),
    "avg_delivery_time_seconds": (1.5, 37.5),
}


async def test_every_figure_of_both_periods_and_their_comparison(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    await insert(api, "channel_messages_log", me, *RICH)
    response = await api.client.get("/api/metrics/messages", params=PERIOD, headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["period"] == {
        "start": "2025-11-01T00:00:00.000Z",
        "end": "2025-12-01T00:00:00.000Z",
    }
    assert body["previous"] == {
        "start": "2025-10-02T00:00:00.000Z",
        "end": "2025-11-01T00:00:00.000Z",
    }
    current, previous = body["current_period"], body["previous_period"]
    assert {k: v for k, v in current.items() if not k.startswith("by_")} == RICH_CURRENT
    assert {k: v for k, v in previous.items() if not k.startswith("by_")} == RICH_PREVIOUS
    assert current["by_channel"] == [
        rate_row("channel", "email", 2, 0, 0.0, 0.0, 0.0, 0.0),
        rate_row("channel", "sms", 4, 2, 50.0, 0.35, 0.2418, 0.0382),
        rate_row("channel", "whatsapp", 1, 1, 100.0, 0.0, 0.0, 0.0),
    ]
    assert current["by_message_type"] == [
        rate_row("message_type", "appointment_reminder", 1, 1, 100.0, 0.07, 0.05, 0.02),
        rate_row("message_type", "marketing", 2, 1, 50.0, 0.21, 0.1918, 0.0182),
        rate_row("message_type", "notification", 1, 0, 0.0, 0.0, 0.0, 0.0),
        rate_row("message_type", "transactional", 3, 1, 33.33, 0.07, 0.0, 0.0),
    ]
    assert previous["by_channel"] == [rate_row("channel", "sms", 3, 2, 66.67, 0.21, 0.14, 0.07)]
    assert previous["by_message_type"] == [
        rate_row("message_type", "marketing", 1, 0, 0.0, 0.07, 0.05, 0.02),
        rate_row("message_type", "transactional", 2, 2, 100.0, 0.14, 0.09, 0.05),
    ]
    comparison = body["comparison"]
    assert set(comparison) == set(RICH_COMPARISON)
    for name, (absolute, percentage) in RICH_COMPARISON.items():
        assert comparison[name] == {"absolute": absolute, "percentage": percentage}, name


@pytest.mark.parametrize(
    ("filters", "total", "revenue", "channels"),
    [
        ({"channel": "sms"}, 4, 0.35, ["sms"]),  # m1-m4
        ({"agent": "louis"}, 2, 0.21, ["sms"]),  # m1, m2
        ({"message_type": "transactional"}, 3, 0.07, ["email", "sms", "whatsapp"]),  # m4 m5 m9
        ({"channel": "email", "message_type": "notification"}, 1, 0.0, ["email"]),  # m6
    ],
)
async def test_filters_narrow_both_periods(
    api: Api, filters: dict[str, str], total: int, revenue: float, channels: list[str]
) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    await insert(api, "channel_messages_log", me, *RICH)
    response = await api.client.get(
        "/api/metrics/messages", params={**PERIOD, **filters}, headers=key
    )
    body = response.json()
    assert body["current_period"]["total"] == total
    assert body["current_period"]["total_revenue"] == revenue
    assert [c["channel"] for c in body["current_period"]["by_channel"]] == channels
    assert body["filters"] == {"channel": None, "message_type": None, "agent": None, **filters}


async def test_an_empty_period_has_zero_counts_and_no_averages(api: Api) -> None:
    await noisy_neighbour(api)
    _, key = await tenant(api, "quiet")
    body = (await api.client.get("/api/metrics/messages", params=PERIOD, headers=key)).json()
    current = body["current_period"]
    assert current["total"] == 0 and current["delivery_rate"] == 0.0
    assert current["total_revenue"] == 0.0 and current["unique_recipients"] == 0
    for name in ("margin_percentage", "avg_cost_per_message", "avg_characters", "max_characters"):
        assert current[name] is None, name
    assert current["by_channel"] == [] and current["by_message_type"] == []
    assert body["comparison"]["total"] == {"absolute": 0, "percentage": None}
    assert body["comparison"]["avg_characters"] == {"absolute": None, "percentage": None}


async def test_periods_are_half_open(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    await insert(api, "channel_messages_log", me, msg("2025-11-10T00:00:00.000Z"))

    async def totals(start: str, end: str) -> tuple[int, int]:
        params = {"start": start, "end": end}
        body = (await api.client.get("/api/metrics/messages", params=params, headers=key)).json()
        return body["current_period"]["total"], body["previous_period"]["total"]

    # the message starts the period it is in, and is not in the one that ends on it
    assert await totals("2025-11-10T00:00:00Z", "2025-11-11T00:00:00Z") == (1, 0)
    assert await totals("2025-11-09T00:00:00Z", "2025-11-10T00:00:00Z") == (0, 0)
    # a period that starts 1 ms later has the message as the last ms of its previous period
    assert await totals("2025-11-10T00:00:00.001Z", "2025-11-11T00:00:00.001Z") == (0, 1)
    # offsets are honoured: 01:00+01:00 is midnight UTC
    assert await totals("2025-11-10T01:00:00+01:00", "2025-11-10T02:00:00+01:00") == (1, 0)
    # the same with the "+" not percent-encoded, so that it arrives as a space
    raw = "?start=2025-11-10T01:00:00+01:00&end=2025-11-10T02:00:00+01:00"
    body = (await api.client.get("/api/metrics/messages" + raw, headers=key)).json()
    assert body["period"]["start"] == "2025-11-10T00:00:00.000Z"
    assert body["current_period"]["total"] == 1


async def test_dates_are_midnight_in_the_tenants_time_zone(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "paris")  # tenants are created in Europe/Paris by default
    await insert(
        api,
        "channel_messages_log",
        me,
        msg("2025-10-31T23:30:00.000Z"),  # 00:30 on Nov 1 in Paris: inside
        msg("2025-11-01T23:30:00.000Z"),  # 00:30 on Nov 2 in Paris: the next day
    )
    params = {"start": "2025-11-01", "end": "2025-11-02"}
    body = (await api.client.get("/api/metrics/messages", params=params, headers=key)).json()
    assert body["period"] == {
        "start": "2025-10-31T23:00:00.000Z",
        "end": "2025-11-01T23:00:00.000Z",
    }
    assert body["current_period"]["total"] == 1


async def test_the_default_period_is_the_last_30_days(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    now = datetime.now(UTC)
    await insert(
        api,
        "channel_messages_log",
        me,
        msg(iso(now - timedelta(hours=1))),
        msg(iso(now - timedelta(days=29))),
        msg(iso(now - timedelta(days=31))),
    )
    body = (await api.client.get("/api/metrics/messages", headers=key)).json()
    start, end = parse_iso(body["period"]["start"]), parse_iso(body["period"]["end"])
    assert end - start == timedelta(days=30)
    assert abs(end - datetime.now(UTC)) < timedelta(minutes=1)
    assert body["current_period"]["total"] == 2
    assert body["previous_period"]["total"] == 1


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/metrics/messages", {"start": "2025-12-01", "end": "2025-11-01"}, "start"),
        ("/api/metrics/messages", {"start": "2025-11-01", "end": "2025-11-01"}, "start"),
        ("/api/metrics/messages", {"start": "2024-01-01", "end": "2025-11-01"}, "start"),
        ("/api/metrics/messages", {"start": "2025-13-01"}, "start"),
        ("/api/metrics/messages", {"end": "yesterday"}, "end"),
        ("/api/metrics/messages", {"start": "2025-11-01T10:00:00"}, "start"),
        ("/api/metrics/messages", {"channel": "fax"}, "channel"),
        ("/api/metrics/messages", {"message_type": "spam"}, "message_type"),
        ("/api/metrics/messages", {"colour": "blue"}, "colour"),
        ("/api/metrics/calls", {"start": "2025-11-31"}, "start"),
        ("/api/metrics/unprofitable", {"limit": "0"}, "limit"),
        ("/api/communications", {}, "contact"),
        ("/api/communications", {"contact": "Anne"}, "contact"),
        ("/api/communications", {"contact": "+33 6"}, "contact"),
        ("/api/communications", {"contact": "anne@"}, "contact"),
        ("/api/communications", {"contact": ANNE, "cursor": "not-a-cursor"}, "cursor"),
    ],
)
async def test_bad_inputs_name_the_field(
    api: Api, path: str, params: dict[str, str], field: str
) -> None:
    _, key = await tenant(api, "acme")
    assert fields_of(await api.client.get(path, params=params, headers=key)) == [field]


# -- call metrics ------------------------------------------------------------------------------


def call(created_at: str, outcome: str | None, duration: float | None, *money: float) -> Any:
    cost, billed, margin = money or (None, None, None)
    return {
        "created_at": created_at,
        "outcome": outcome,
        "duration_seconds": duration,
        "provider_cost": cost,
        "billed_cost": billed,
        "margin": margin,
    }


async def test_call_metrics_and_their_comparison(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    now, before = "2025-11-03T10:00:00.000Z", "2025-10-20T10:00:00.000Z"
    await insert(
        api,
        "call_logs",
        me,
        call(now, "bridged", 120, 0.20, 0.30, 0.10),
        call(now, "bridged", 45.5, 0.10, 0.15, 0.05),
        call(now, "fallback_dial", 30, 0.05, 0.15, 0.10),
        call(now, "fallback_apology", None),
        call(now, "channel_disabled", None),
        call("2025-11-30T23:59:59.999Z", "bridged", 300, 0.60, 0.75, 0.15),
        call("2025-12-01T00:00:00.000Z", "bridged", 1000, 1.0, 1.0, 1.0),  # the end: not counted
        call(before, "bridged", 60, 0.10, 0.15, 0.05),
        call(before, "fallback_dial", 20, 0.02, 0.15, 0.13),
    )
    await insert(
        api,
        "rendez_vous",
        me,
        {"created_at": now, "source": "voice", "call_id": "call_a"},
        {"created_at": now, "source": "api", "call_id": "call_b"},  # from a call: counted
        {"created_at": now, "source": "api"},  # booked through the API: not from a call
        {"created_at": before, "source": "voice", "status": "cancelled"},
    )
    await insert(api, "qualified_prospects", me, *[{"created_at": t} for t in (now, now, before)])
    await insert(api, "tickets", me, {"created_at": now})
    response = await api.client.get("/api/metrics/calls", params=PERIOD, headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["previous"] == {
        "start": "2025-10-02T00:00:00.000Z",
        "end": "2025-11-01T00:00:00.000Z",
    }
    assert body["current_period"] == {
        "calls": 6,
        "bridged": 3,
        "fallbacks": 2,
        "avg_duration_seconds": 123.88,  # 495.5 / 4 = 123.875, half up
        "total_duration_seconds": 495.5,
        "appointments_booked": 2,
        "booking_conversion": 66.67,  # 2 / 3 bridged
        "prospects_qualified": 2,
        "tickets_created": 1,
        "total_cost": 0.95,
        "total_revenue": 1.35,
        "total_margin": 0.4,
    }
    assert body["previous_period"] == {
        "calls": 2,
        "bridged": 1,
        "fallbacks": 1,
        "avg_duration_seconds": 40.0,
        "total_duration_seconds": 80.0,
        "appointments_booked": 1,
        "booking_conversion": 100.0,
        "prospects_qualified": 1,
        "tickets_created": 0,
        "total_cost": 0.12,
        "total_revenue": 0.3,
        "total_margin": 0.18,
    }
    expected = {
        "calls": (4, 200.0),
        "bridged": (2, 200.0),
        "fallbacks": (1, 100.0),
        "avg_duration_seconds": (83.88, 209.7),
        "total_duration_seconds": (415.5, 519.38),  # 5.19375, half up
        "appointments_booked": (1, 100.0),
        "booking_conversion": (-33.33, -33.33),
        "prospects_qualified": (1, 100.0),
        "tickets_created": (1, None),
        "total_cost": (0.83, 691.67),
        "total_revenue": (1.05, 350.0),
        "total_margin": (0.22, 122.22),
    }
    assert body["comparison"] == {
        name: {"absolute": a, "percentage": p} for name, (a, p) in expected.items()
    }


# -- one contact's timeline --------------------------------------------------------------------


async def test_timeline_merges_calls_and_messages_newest_first_across_pages(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    tie = "2025-11-03T10:00:00.000Z"
    outbound = {"direction": "outbound", "from_number": SHARED_LINE, "to_number": ANNE}
    await insert(
        api,
        "call_logs",
        me,
        {"id": "call_k1", "created_at": tie, "outcome": "bridged", "duration_seconds": 120}
        | money(0.3),
        {"id": "call_k2", "created_at": "2025-11-05T09:00:00.000Z", "status": "no-answer"}
        | outbound,
        {"id": "call_k9", "created_at": tie, "from_number": BRUNO},
    )
    inbound = {"direction": "inbound", "to_address": SHARED_LINE, "from_address": ANNE}
    await insert(
        api,
        "channel_messages_log",
        me,
        msg("2025-11-03T10:05:00.000Z", id="msg_x1", body="Rendez-vous demain", **money(0.07)),
        msg("2025-11-03T10:06:00.000Z", id="msg_x2", status="received", body="OUI", **inbound),
        msg(tie, id="msg_x3", channel="whatsapp", body="Bonjour", **money(0.0)),
        msg(tie, id="msg_x9", to_address=BRUNO, body="Not Anne"),
    )
    seen: list[dict[str, Any]] = []
    cursor = None
    # the tie at 10:00 is broken by id, descending, across the two tables and across pages
    for expected_ids in (["call_k2", "msg_x2"], ["msg_x1", "msg_x3"], ["call_k1"]):
        params = {"contact": "+33 6 11 11 11 11", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        response = await api.client.get("/api/communications", params=params, headers=key)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["contact"] == ANNE
        assert [item["id"] for item in page["items"]] == expected_ids
        seen += page["items"]
        cursor = page["next_cursor"]
    assert cursor is None
    by_id = {item["id"]: item for item in seen}
    assert by_id["call_k1"] == {
        "type": "call",
        "id": "call_k1",
        "time": tie,
        "channel": "phone",
        "direction": "inbound",
        "status": "bridged",
        "cost": 0.3,
        "duration_seconds": 120,
        "content": None,
    }
    assert by_id["call_k2"]["status"] == "no-answer" and by_id["call_k2"]["direction"] == "outbound"
    assert by_id["msg_x2"] == {
        "type": "message",
        "id": "msg_x2",
        "time": "2025-11-03T10:06:00.000Z",
        "channel": "sms",
        "direction": "inbound",
        "status": "received",
        "cost": None,
        "duration_seconds": None,
        "content": "OUI",
    }
    assert by_id["msg_x3"]["channel"] == "whatsapp" and by_id["msg_x1"]["cost"] == 0.07


async def test_timeline_of_an_email_address(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    long_body = "é" * 600
    email = {"channel": "email"}
    await insert(
        api,
        "channel_messages_log",
        me,
        msg("2025-11-01T10:00:00.000Z", to_address="jean.dupont@example.com", **email)
        | {"subject": "Votre devis", "body": long_body},
        # stored as the sender normalised it: domain lowercased, local part kept
        msg("2025-11-02T10:00:00.000Z", to_address="Jean.Dupont@example.com", **email)
        | {"subject": "Relance", "body": "Bonjour"},
        msg("2025-11-03T10:00:00.000Z", to_address="paul@example.com", subject="Autre", **email),
    )
    params = {"contact": "Jean.Dupont@EXAMPLE.com", "limit": "2"}
    page = (await api.client.get("/api/communications", params=params, headers=key)).json()
    assert page["contact"] == "jean.dupont@example.com"
    contents = [item["content"] for item in page["items"]]
    assert contents[0] == "Relance\nBonjour"
    assert contents[1] == ("Votre devis\n" + long_body)[:500] and len(contents[1]) == 500
    assert len(contents) == 2 and page["next_cursor"] is None  # exactly one full page


# -- profitability -----------------------------------------------------------------------------


async def test_unprofitable_items_worst_first_and_loss_share_by_channel(api: Api) -> None:
    await noisy_neighbour(api)
    me, key = await tenant(api, "acme")
    when = "2025-11-10T10:00:00.000Z"
    await insert(
        api,
        "channel_messages_log",
        me,
        msg(when, id="msg_u1", to_address=BRUNO, num_segments=2, **money(0.14, 0.1468, -0.0068)),
        msg(when, id="msg_u2", to_address=CAMILLE, num_segments=1, **money(0.07, 0.85, -0.78)),
        msg(when, id="msg_u4", channel="whatsapp", **money(0.0, 0.0, 0.0)),
        msg(when, id="msg_u5", **money(0.07, 0.05, 0.02)),
        msg(when, id="msg_u6", status="queued", **money(0.07)),  # not priced yet
        msg(when, id="msg_u7", channel="email", to_address="a@example.com", **money(0.0, 0.0, 0.0)),
        msg("2025-10-31T10:00:00.000Z", id="msg_u8", **money(0.07, 5.07, -5.0)),  # before
    )
    await insert(
        api,
        "call_logs",
        me,
        {"id": "call_u3", "created_at": when, "duration_seconds": 61, **money(0.15, 0.2, -0.05)},
    )
    response = await api.client.get("/api/metrics/unprofitable", params=PERIOD, headers=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["items"]] == ["msg_u2", "call_u3", "msg_u1"]
    assert body["items"][0] == {
        "type": "message",
        "id": "msg_u2",
        "time": when,
        "channel": "sms",
        "contact": CAMILLE,
        "revenue": 0.07,
        "cost": 0.85,
        "margin": -0.78,
        "margin_percentage": -1114.29,  # the product's satellite example
        "num_segments": 1,
        "duration_seconds": None,
    }
    assert body["items"][1]["contact"] == ANNE and body["items"][1]["duration_seconds"] == 61
    assert body["items"][1]["margin_percentage"] == -33.33
    assert body["loss_share_by_channel"] == [
        {"channel": "email", "priced": 1, "losing": 0, "loss_share": 0.0, "total_loss": 0.0},
        {"channel": "phone", "priced": 1, "losing": 1, "loss_share": 100.0, "total_loss": -0.05},
        # u1, u2 lose; u5 gains; u6 has no margin yet
        {"channel": "sms", "priced": 3, "losing": 2, "loss_share": 66.67, "total_loss": -0.7868},
        {"channel": "whatsapp", "priced": 1, "losing": 0, "loss_share": 0.0, "total_loss": 0.0},
    ]
    params = {**PERIOD, "limit": "2"}
    body = (await api.client.get("/api/metrics/unprofitable", params=params, headers=key)).json()
    assert [item["id"] for item in body["items"]] == ["msg_u2", "call_u3"]


# -- operator ----------------------------------------------------------------------------------


async def test_operator_metrics_per_tenant_sorted(api: Api) -> None:
    # the neighbour is one more tenant here: 4 messages 36.0/80.0/-44.0, 2 calls 18.0/40.0/-22.0
    await noisy_neighbour(api)
    when = "2025-11-10T10:00:00.000Z"
    ids = {}
    for slug in ("gamma", "alpha", "delta", "beta"):
        ids[slug], _ = await tenant(api, slug)
    messages = "channel_messages_log"
    await insert(api, messages, ids["alpha"], *[msg(when, **money(0.07, 0.05, 0.02))] * 2)
    await insert(api, "call_logs", ids["alpha"], call(when, "bridged", 60, 0.2, 0.3, 0.1))
    await insert(
        api,
        "channel_messages_log",
        ids["beta"],
        msg(when, **money(0.14, 0.1468, -0.0068)),
        msg("2025-10-10T10:00:00.000Z", **money(0.07, 0.0, 50.0)),  # before the period
        msg(when, direction="inbound", status="received", **money(0.07, 0.0, 50.0)),
    )
    await insert(api, messages, ids["gamma"], *[msg(when, **money(0.07, 0.03, 0.04))] * 3)
    await insert(api, "call_logs", ids["gamma"], call(when, "bridged", 60, 0.2, 0.15, -0.05))

    async def ranking(**params: str) -> list[dict[str, Any]]:
        response = await api.client.get(
            "/admin/metrics", params={**PERIOD, **params}, headers=api.admin
        )
        assert response.status_code == 200, response.text
        return list(response.json()["tenants"])

    default = await ranking()  # margin, descending
    assert [t["slug"] for t in default] == ["gamma", "alpha", "delta", "beta", "noisy-neighbour"]
    assert default[1] == {
        "tenant_id": ids["alpha"],
        "slug": "alpha",
        "name": "Alpha",
        "messages": 2,
        "revenue": 0.14,
        "cost": 0.1,
        "margin": 0.04,
        "calls": 1,
        "call_revenue": 0.3,
        "call_cost": 0.2,
        "call_margin": 0.1,
        "total_revenue": 0.44,
        "total_margin": 0.14,
    }
    # alpha and beta both billed 0.14: ties keep slug order
    by_revenue = await ranking(sort="revenue", order="asc")
    assert [t["slug"] for t in by_revenue] == ["delta", "alpha", "beta", "gamma", "noisy-neighbour"]
    assert [t["messages"] for t in await ranking(sort="messages")] == [4, 3, 2, 1, 0]
    # alpha 0.04 + 0.1 = 0.14 > gamma 0.12 - 0.05 = 0.07
    assert [t["slug"] for t in await ranking(sort="total_margin", limit="2")] == ["alpha", "gamma"]
    response = await api.client.get("/admin/metrics", params=PERIOD, headers=api.admin)
    assert response.json()["totals"] == {
        "tenants": 5,
        "messages": 10,
        "calls": 4,  # the call no tenant was found for is nobody's
        "revenue": 36.49,  # 0.14 + 0.14 + 0.21 + 36
        "cost": 80.3368,  # 0.10 + 0.1468 + 0.09 + 80
        "margin": -43.8468,  # 0.04 - 0.0068 + 0.12 - 44
        "call_revenue": 18.45,
        "call_cost": 40.4,
        "call_margin": -21.95,
        "total_revenue": 54.94,
        "total_margin": -65.7968,
    }
    bad = await api.client.get("/admin/metrics", params={"sort": "mood"}, headers=api.admin)
    assert fields_of(bad) == ["sort"]
    _, key = await tenant(api, "epsilon")
    assert (await api.client.get("/admin/metrics", headers=key)).status_code == 403


# -- indexes -----------------------------------------------------------------------------------


async def plan(api: Api, sql: str, params: dict[str, Any]) -> list[str]:
    rows = await api.gateway.db.fetchall("EXPLAIN QUERY PLAN " + sql, params)
    return [str(row["detail"]) for row in rows]


async def test_metrics_queries_search_an_index_on_tenant_and_created_at(api: Api) -> None:
    """Without this the metrics of one tenant would read every tenant's rows (or, through a
    narrower index, visit each message row and its body); the numbers behind the choice of
    indexes were measured on a million rows and are in the 0004 migration's notes."""
    window = {
        "tenant_id": "ten_x",
        "prev_start": "2025-10-02T00:00:00.000Z",
        "start": "2025-11-01T00:00:00.000Z",
        "end": "2025-12-01T00:00:00.000Z",
    }
    period = "(tenant_id=? AND created_at>? AND created_at<?)"
    covering = f"SEARCH channel_messages_log USING COVERING INDEX ix_messages_analytics {period}"
    ranges = {"lo0": window["prev_start"], "hi0": window["start"]}
    ranges |= {"lo1": window["start"], "hi1": window["end"]}
    names = [figure.name for figure in rollups.FIGURES]
    for filters in ({}, {"channel": "sms", "agent": "louis"}):
        for group_by in ((), rollups.DIMENSIONS):
            sql, extra = rollups.live_sql(2, names, filters, "sqlite", group_by)
            details = await plan(api, sql, {**window, **ranges, **extra})
            assert details.count(covering) == 2
            assert not any(d.startswith("SCAN channel_messages_log") for d in details)
    # the rollups: a range of their primary key
    for table, key in (("message_day_rollups", "day"), ("message_hour_rollups", "hour")):
        sql, extra = rollups.rolled_sql(table, 1, names, {"channel": "sms"})
        keys = {"tenant_id": "ten_x", "lo0": "2025", "hi0": "2026"}
        details = await plan(api, sql, keys | extra)
        index = f"sqlite_autoindex_{table}_1 (tenant_id=? AND {key}>? AND {key}<?)"
        assert details == [f"SEARCH {table} USING INDEX {index}"]
    # the losing messages, worst first: their own small index, read in margin order
    losing = {"start": window["start"], "end": window["end"], "limit": 20}
    details = await plan(api, store.UNPROFITABLE_SQL, {"tenant_id": "ten_x", **losing})
    assert any("USING INDEX ix_messages_losing (tenant_id=? AND margin<?)" in d for d in details)
    details = await plan(api, store.CALL_TOTALS_SQL, window)
    assert f"SEARCH call_logs USING INDEX ix_call_logs_tenant_created {period}" in details
    details = await plan(api, store.CALL_OUTCOMES_SQL, window)
    assert f"SEARCH rendez_vous USING INDEX ix_rendez_vous_tenant_created {period}" in details
    details = await plan(api, store.OPERATOR_MESSAGES_SQL, window)
    assert f"SEARCH m USING COVERING INDEX ix_messages_analytics {period} LEFT-JOIN" in details


async def test_a_contacts_timeline_searches_by_contact_not_by_time(api: Api) -> None:
    sql = store.timeline_sql(1, calls=True, cursor=True)
    params = {"tenant_id": "ten_x", "c0": ANNE, "limit": 51, "b_time": "2025-11-01", "b_id": "x"}
    details = await plan(api, sql, params)

    def search(table: str, index: str, column: str) -> str:
        return f"SEARCH {table} USING INDEX {index} (tenant_id=? AND {column}=? AND created_at<?)"

    tables = [d for d in details if d.startswith(("SEARCH", "SCAN c"))]  # not subqueries
    assert sorted(tables) == [
        search("call_logs", "ix_call_logs_from", "from_number"),
        search("call_logs", "ix_call_logs_to", "to_number"),
        search("channel_messages_log", "ix_messages_tenant_from", "from_address"),
        search("channel_messages_log", "ix_messages_tenant_to", "to_address"),
    ]
