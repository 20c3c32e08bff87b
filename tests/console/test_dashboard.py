"""The dashboard over HTTP (the app in-process): what a user reads in each section for seeded
messages and calls — the KPI values and their change from the previous period, the chart's
points and labels, money by channel, the unprofitable rows, one contact's timeline — in
English and in French, and nothing of another tenant's (a noisy neighbour with large figures
is seeded in every test). The figures are worked out by hand next to the data."""

from __future__ import annotations

import html
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config import Settings
from tests.conftest import ADMIN_KEY, Api, running_api

SVG = "{http://www.w3.org/2000/svg}"
HX = {"HX-Request": "true"}
ANNE, BRUNO = "+33611111111", "+33622222222"
# current [1 Nov, 1 Dec), midnights in Paris; previous the 30 days before: from 01:00 on 2 Oct
# (summer time until 26 Oct)
NOVEMBER = "period=custom&from=2025-11-01&to=2025-11-30"
_ids = iter(range(1_000_000))


# -- seeding ----------------------------------------------------------------------------------


def message(
    created_at: str,
    status: str,
    billed: float | None = 0.07,
    cost: float | None = None,
    margin: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    row = {
        "channel": "sms",
        "direction": "outbound",
        "to_address": ANNE,
        "message_type": "transactional",
        "status": status,
        "num_segments": 1,
        "billed_cost": billed,
        "provider_cost": cost,
        "margin": margin,
        "created_at": created_at,
    }
    return row | extra


def call(
    created_at: str, outcome: str, duration: float, billed: float, cost: float, **extra: Any
) -> dict[str, Any]:
    row = {
        "call_sid": f"CA{next(_ids):032d}",
        "from_number": ANNE,
        "to_number": "+33939035761",
        "status": "completed",
        "outcome": outcome,
        "duration_seconds": duration,
        "billed_cost": billed,
        "provider_cost": cost,
        "margin": round(billed - cost, 4),
        "created_at": created_at,
    }
    return row | extra


async def insert(api: Api, table: str, tenant_id: str, *rows: dict[str, Any]) -> None:
    def write(conn: sqlite3.Connection) -> None:
        for extra in rows:
            row = {"id": f"{table[:4]}_{next(_ids):06d}", "tenant_id": tenant_id, **extra}
            row.setdefault("updated_at", row["created_at"])
            if table in ("channel_messages_log", "call_logs"):
                row.setdefault("metadata", "{}")
            names, marks = ", ".join(row), ", ".join(f":{name}" for name in row)
            conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", row)

    await api.gateway.db.write_fn(write)


async def tenant(api: Api, slug: str) -> tuple[str, str]:
    created, headers = await api.create_tenant(slug)
    return str(created["id"]), headers["Authorization"].removeprefix("Bearer ")


async def neighbour(api: Api) -> None:
    """Another tenant, busy in both periods with huge figures and the same contact."""
    other, _ = await tenant(api, "noisy-neighbour")
    for when in ("2025-10-15T12:00:00.000Z", "2025-11-15T12:00:00.000Z"):
        rows = [
            message(when, status, 900.0, 2000.0, -1100.0, body="the neighbour's secret")
            for status in ("delivered", "failed", "sent")
        ]
        await insert(api, "channel_messages_log", other, *rows)
        await insert(api, "call_logs", other, call(when, "bridged", 9999, 500.0, 900.0))


async def november(api: Api, tenant_id: str) -> None:
    """The product's worked example in November, one message in October, and three calls.

    Messages now: 3 (delivered, sent, failed) billed 0.07 each = 0.21; known costs 0.05 and
    0.08 = 0.13; margins 0.02 and -0.01 = 0.01, over the 0.14 billed where a margin is known
    = 7.14 %. Delivery 1/3 = 33.33 %, failure 33.33 %. The failed one was sent at 23:30 UTC
    on 4 Nov: 00:30 on 5 Nov in Paris. October: 1 delivered, 0.07 billed, 0.05 cost, 0.02
    margin. Change: messages +200 %, delivery 33.33 - 100 = -66.67 pts, failure +33.33 pts,
    billed +200 %, cost +160 %, margin -50 %.
    Calls now: 2 bridged (120 s and 180 s, billed 0.30 and 0.45, cost 0.10 and 0.15) and a
    fallback (30 s, billed 0, cost 0.05: a loss); 330 s in all, 110 s on average; margin
    0.20 + 0.30 - 0.05 = 0.45 on 0.75 billed; one appointment booked: 1 of 2 bridged = 50 %.
    No call in October.
    """
    await insert(
        api,
        "channel_messages_log",
        tenant_id,
        message("2025-11-03T10:00:00.000Z", "delivered", 0.07, 0.05, 0.02, body="Bonjour Anne"),
        message("2025-11-04T10:00:00.000Z", "sent", to_address=BRUNO),
        message("2025-11-04T23:30:00.000Z", "failed", 0.07, 0.08, -0.01, body="Rappel"),
        message("2025-10-20T10:00:00.000Z", "delivered", 0.07, 0.05, 0.02),
    )
    await insert(
        api,
        "call_logs",
        tenant_id,
        call("2025-11-05T09:00:00.000Z", "bridged", 120, 0.30, 0.10),
        call("2025-11-06T09:00:00.000Z", "bridged", 180, 0.45, 0.15),
        call("2025-11-07T09:00:00.000Z", "fallback_dial", 30, 0.0, 0.05),
    )
    await insert(
        api,
        "rendez_vous",
        tenant_id,
        {
            "customer_name": "Anne",
            "customer_phone": ANNE,
            "source": "voice",
            "starts_at": "2025-11-20T09:00:00.000Z",
            "ends_at": "2025-11-20T09:30:00.000Z",
            "created_at": "2025-11-05T09:02:00.000Z",
        },
    )


# -- reading pages ------------------------------------------------------------------------------


def text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: its text, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def card(page: str, key: str) -> str:
    found = re.search(rf'data-kpi="{re.escape(key)}">(.*?)</li>', page, re.S)
    assert found, f"no KPI card {key}"
    return text(found.group(1))


def chart(page: str, chart_id: str) -> ET.Element:
    found = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', page, re.S)
    assert found, f"no chart {chart_id}"
    return ET.fromstring(found.group(0))


def tooltips(svg: ET.Element, kind: str) -> list[str]:
    """The tooltip of each `kind` element that has one."""
    found = (el.findtext(f"{SVG}title") for el in svg.iter(f"{SVG}{kind}"))
    return [tip for tip in found if tip is not None]


def rows(page: str, tbody_id: str | None = None) -> list[str]:
    body = page
    if tbody_id:
        found = re.search(rf'<tbody id="{tbody_id}">(.*?)</tbody>', page, re.S)
        assert found
        body = found.group(1)
    return [text(row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF field"
    return found.group(1)


async def sign_in(api: Api, key: str) -> None:
    api.client.cookies.clear()  # whoever was signed in before
    form = await api.client.get("/console/sign-in")
    signed = await api.client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": csrf_of(form.text)}
    )
    assert signed.status_code == 303, signed.text


class Dashboard:
    def __init__(self, api: Api, lang: str = "en") -> None:
        self.api = api
        self.headers = {"Accept-Language": lang}

    async def page(self, query: str = "", status: int = 200) -> str:
        response = await self.api.client.get(f"/console/dashboard?{query}", headers=self.headers)
        assert response.status_code == status, response.text
        return response.text

    async def section(self, name: str, query: str = NOVEMBER, status: int = 200) -> str:
        response = await self.api.client.get(
            f"/console/dashboard/{name}?{query}", headers={**self.headers, **HX}
        )
        assert response.status_code == status, response.text
        return response.text


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        await neighbour(running)
        yield running


@pytest.fixture
async def acme(api: Api) -> str:
    tenant_id, key = await tenant(api, "acme")
    await november(api, tenant_id)
    await sign_in(api, key)
    return tenant_id


# -- the page ----------------------------------------------------------------------------------


async def test_page_loads_each_section_for_the_chosen_period(api: Api, acme: str) -> None:
    page = await Dashboard(api).page(NOVEMBER)
    assert "<h1>Dashboard</h1>" in page
    summary = re.search(r'id="period-summary">(.*?)</p>', page, re.S)
    assert summary
    assert text(summary.group(1)) == (
        "1 Nov 2025 \u2013 30 Nov 2025, compared with the period of the same length before it: "
        "2 Oct 2025 01:00 \u2013 31 Oct 2025."
    )
    for name in ("kpis", "delivery", "money", "unprofitable"):
        assert f'hx-get="/console/dashboard/{name}?{html.escape(NOVEMBER)}"' in page
    assert '<label for="period-from">From</label>' in page
    assert 'value="2025-11-01"' in page and 'value="2025-11-30"' in page


async def test_presets_start_at_midnight_where_the_tenant_is(api: Api, acme: str) -> None:
    page = await Dashboard(api).page("period=7")
    assert '<a href="/console/dashboard?period=7" aria-current="true">Last 7 days</a>' in page
    assert 'hx-get="/console/dashboard/kpis?period=7"' in page
    summary = re.search(r'id="period-summary">(.*?)</p>', page, re.S)
    assert summary and re.match(
        r"\d+ \w{3} \d{4} \u2013 \d+ \w{3} \d{4} \d\d:\d\d,", text(summary[1])
    )
    default = await Dashboard(api).page()
    assert '<a href="/console/dashboard?period=30" aria-current="true">' in default


async def test_a_wrong_custom_period_shows_the_api_message_next_to_the_field(
    api: Api, acme: str
) -> None:
    page = await Dashboard(api).page("period=custom&from=2025-11-30&to=2025-11-01", status=422)
    error = re.search(r'id="period-from-error">(.*?)</p>', page)
    # the API's own words (To is included: the API's end is the day after, in Paris)
    assert error and error[1] == "must be before end (2025-11-01T23:00:00.000Z)"
    assert 'aria-invalid="true" aria-describedby="period-from-error"' in page
    assert "hx-get=" not in page.split('id="contact-heading"')[0]  # no section loads
    page = await Dashboard(api).page("period=custom&from=1st+of+May&to=2025-11-01", status=422)
    error = re.search(r'id="period-from-error">(.*?)</p>', page)
    assert error and "must be a date (2025-11-01)" in html.unescape(error[1])
    too_long = await Dashboard(api).section(
        "kpis", "period=custom&from=2024-01-01&to=2025-11-01", status=422
    )
    assert "from: the period may span at most 366 days" in text(too_long)


async def test_sections_outside_htmx_lead_to_the_page_and_need_a_session(api: Api) -> None:
    anonymous = await api.client.get(f"/console/dashboard/kpis?{NOVEMBER}", headers=HX)
    assert anonymous.headers.get("hx-redirect") == "/console/sign-in"
    _, key = await tenant(api, "beta")
    await sign_in(api, key)
    bookmark = await api.client.get(f"/console/dashboard/kpis?{NOVEMBER}")
    assert bookmark.status_code == 303
    assert bookmark.headers["location"] == f"/console/dashboard?{NOVEMBER}"


# -- KPIs --------------------------------------------------------------------------------------


async def test_kpis_show_the_figures_the_change_and_the_previous_period(
    api: Api, acme: str
) -> None:
    kpis = await Dashboard(api).section("kpis")
    assert card(kpis, "messages.total") == (
        "Messages sent 3 3 SMS segment(s) ▲ +200.00% previous period: 1"
    )
    assert card(kpis, "messages.delivery_rate") == (
        "Delivery rate 33.33% 1 delivered ▼ -66.67 pts previous period: 100.00%"
    )
    assert card(kpis, "messages.failure_rate") == (
        "Failure rate 33.33% 1 failed ▲ +33.33 pts previous period: 0.00%"
    )
    assert card(kpis, "messages.total_revenue") == (
        "Billed €0.21 €0.0700 per message ▲ +200.00% previous period: €0.07"
    )
    assert card(kpis, "messages.total_cost") == (
        "Provider cost €0.13 €0.0650 per message ▲ +160.00% previous period: €0.05"
    )
    assert card(kpis, "messages.total_margin") == (
        "Margin €0.01 7.14% of the billed amount ▼ -50.00% previous period: €0.02"
    )
    assert card(kpis, "calls.calls") == (
        "Calls 3 2 bridged to the assistant ▲ new (none before) previous period: 0"
    )
    assert card(kpis, "calls.appointments_booked") == (
        "Appointments booked 1 50.00% of bridged calls ▲ new (none before) previous period: 0"
    )
    assert card(kpis, "calls.total_duration_seconds").startswith(
        "Time on the phone 5 min 30 s 1 min 50 s on average ▲"
    )
    assert card(kpis, "calls.total_margin") == (
        "Call margin €0.45 billed €0.75 ▲ new (none before) previous period: €0.00"
    )


async def test_kpis_are_the_apis_figures(api: Api, acme: str) -> None:
    """The cards read what GET /api/metrics/messages and /calls answer for the same period."""
    gamma, key = await tenant(api, "gamma")
    await insert(
        api,
        "channel_messages_log",
        gamma,
        *[
            message(f"2025-11-{day:02d}T08:00:00.000Z", "delivered", 0.06, 0.0525, 0.0075)
            for day in range(1, 29)
        ],
        message("2025-11-29T08:00:00.000Z", "undelivered", 0.06, 0.0525, 0.0075),
    )
    auth = {"Authorization": f"Bearer {key}"}
    query = {"start": "2025-11-01", "end": "2025-12-01"}
    figures = (await api.client.get("/api/metrics/messages", params=query, headers=auth)).json()
    await sign_in(api, key)
    kpis = await Dashboard(api).section("kpis")
    current = figures["current_period"]
    assert current["total"] == 29 and current["delivery_rate"] == 96.55
    assert card(kpis, "messages.total").startswith("Messages sent 29 ")
    assert card(kpis, "messages.delivery_rate").startswith("Delivery rate 96.55% 28 delivered")
    assert card(kpis, "messages.total_revenue").startswith(f"Billed €{current['total_revenue']}")
    assert card(kpis, "messages.total_margin").startswith(
        f"Margin €{current['total_margin']:.2f} {current['margin_percentage']:.2f}% of"
    )


async def test_french_numbers_and_words(api: Api, acme: str) -> None:
    delta, key = await tenant(api, "delta")
    await insert(
        api,
        "channel_messages_log",
        delta,
        message("2025-11-10T08:00:00.000Z", "delivered", 1234.56, 1000.0, 234.56),
        message("2025-11-10T09:00:00.000Z", "delivered", 0.5, 0.25, 0.25),
    )
    await sign_in(api, key)
    kpis = await Dashboard(api, "fr-FR,fr;q=0.9").section("kpis")
    # narrow no-break space between thousands, comma decimals, no-break space before €
    assert card(kpis, "messages.total_revenue") == (
        "Facturé 1 235,06 € 617,5300 € par message ▲ nouveau (rien avant) "
        "période précédente : 0,00 €"
    )
    assert '<span class="kpi-value">1\u202f235,06\u00a0€</span>' in kpis
    assert card(kpis, "messages.delivery_rate").startswith("Taux de remise 100,00 % 2 remis")
    page = await Dashboard(api, "fr").page(NOVEMBER)
    assert "<h1>Tableau de bord</h1>" in page
    assert "1 nov. 2025 \u2013 30 nov. 2025" in text(page)


# -- the delivery chart -------------------------------------------------------------------------


async def test_delivery_chart_has_a_point_per_day_with_messages(api: Api, acme: str) -> None:
    epsilon, key = await tenant(api, "epsilon")
    await insert(
        api,
        "channel_messages_log",
        epsilon,
        # 3 Nov (Paris): 2 of 2 delivered; 4 Nov: 1 of 2 (the second at 23:30 UTC on 3 Nov is
        # 00:30 on 4 Nov in Paris); 5 Nov: nothing (a gap); 6 Nov: 0 of 1; 7 Nov: 1 read of 1
        message("2025-11-03T08:00:00.000Z", "delivered"),
        message("2025-11-03T09:00:00.000Z", "delivered"),
        message("2025-11-03T23:30:00.000Z", "failed"),
        message("2025-11-04T12:00:00.000Z", "delivered"),
        message("2025-11-06T12:00:00.000Z", "undelivered"),
        message("2025-11-07T12:00:00.000Z", "read"),
        message("2025-11-07T13:00:00.000Z", "received", direction="inbound"),  # not counted
    )
    await sign_in(api, key)
    section = await Dashboard(api).section(
        "delivery", "period=custom&from=2025-11-03&to=2025-11-07"
    )
    svg = chart(section, "delivery-chart")
    assert svg.get("role") == "img" and svg.get("aria-label") == "Delivery rate per day"
    assert svg.findtext(f"{SVG}title") == "Delivery rate per day"
    assert svg.findtext(f"{SVG}desc") == (
        "Delivery rate of the outbound messages of each day from 3\u00a0Nov to 7\u00a0Nov: "
        "lowest 0.00% on 6\u00a0Nov, highest 100.00% on 3\u00a0Nov, 66.67% over the period. "
        "The table below the chart lists every day."
    )
    assert tooltips(svg, "circle") == [
        "3\u00a0Nov: 100.00%",
        "4\u00a0Nov: 50.00%",
        "6\u00a0Nov: 0.00%",
        "7\u00a0Nov: 100.00%",
    ]
    # the line stops at the day without messages: 3-4 Nov, then 6-7 Nov
    assert len(list(svg.iter(f"{SVG}polyline"))) == 2
    labels = [str(t.text) for t in svg.iter(f"{SVG}text")]
    for shown in ("3\u00a0Nov", "5\u00a0Nov", "100.00%", "50.00%", "the whole period: 66.67%"):
        assert shown in labels
    assert rows(section) == [
        "Day Messages Delivered Failed Delivery rate",
        "3 Nov 2025 2 2 0 100.00%",
        "4 Nov 2025 2 1 1 50.00%",
        "5 Nov 2025 0 0 0 —",
        "6 Nov 2025 1 0 1 0.00%",
        "7 Nov 2025 1 1 0 100.00%",
    ]


async def test_charts_say_so_when_there_is_nothing(api: Api) -> None:
    _, key = await tenant(api, "zeta")
    await sign_in(api, key)
    dashboard = Dashboard(api)
    delivery = await dashboard.section("delivery")
    svg = chart(delivery, "delivery-chart")
    assert tooltips(svg, "circle") == []
    assert "No outbound message in this period." in [t.text for t in svg.iter(f"{SVG}text")]
    assert svg.findtext(f"{SVG}desc") == "No outbound message in this period."
    money = await dashboard.section("money")
    bars = chart(money, "money-chart")
    assert tooltips(bars, "rect") == []
    assert "Nothing billed or paid in this period." in text(money)
    kpis = await dashboard.section("kpis")
    assert card(kpis, "messages.total") == (
        "Messages sent 0 0 SMS segment(s) = no change previous period: 0"
    )
    assert card(kpis, "messages.total_margin").startswith("Margin €0.00 — of the billed")
    losses = await dashboard.section("unprofitable")
    assert "Nothing lost money in this period." in text(losses)


# -- money by channel ---------------------------------------------------------------------------


async def test_money_by_channel_table_and_bars(api: Api, acme: str) -> None:
    money = await Dashboard(api).section("money")
    assert rows(money) == [
        "Channel Volume Billed Provider cost Margin",
        "SMS 3 messages €0.21 €0.13 €0.01",
        "Phone 3 calls €0.75 €0.30 €0.45",
        "Total €0.96 €0.43 €0.46",
    ]
    bars = chart(money, "money-chart")
    assert bars.get("role") == "img"
    assert tooltips(bars, "rect") == [
        "SMS, Billed: €0.21",
        "SMS, Provider cost: €0.13",
        "SMS, Margin: €0.01",
        "Phone, Billed: €0.75",
        "Phone, Provider cost: €0.30",
        "Phone, Margin: €0.45",
    ]
    # each bar also carries its value as text, and the series differ by pattern
    labels = [t.text for t in bars.iter(f"{SVG}text")]
    assert {"€0.21", "€0.13", "€0.75", "Billed", "Provider cost", "Margin"} <= set(labels)
    fills = {r.get("fill") for r in bars.iter(f"{SVG}rect") if r.get("class") == "bar"}
    assert fills == {"#1f5fbf", "url(#money-chart-hatch)", "url(#money-chart-dots)"}


async def test_a_negative_margin_is_drawn_left_of_zero(api: Api) -> None:
    eta, key = await tenant(api, "eta")
    await insert(
        api,
        "channel_messages_log",
        eta,
        message("2025-11-10T08:00:00.000Z", "delivered", 0.05, 0.08, -0.03),
    )
    await sign_in(api, key)
    bars = chart(await Dashboard(api).section("money"), "money-chart")
    axes = [line for line in bars.iter(f"{SVG}line") if line.get("stroke") == "#1d232b"]
    zero = float(str(axes[0].get("x1")))
    drawn = {str(r.findtext(f"{SVG}title")): r for r in bars.iter(f"{SVG}rect") if r.get("class")}
    margin = drawn["SMS, Margin: -€0.03"]
    assert float(str(margin.get("x"))) + float(str(margin.get("width"))) == pytest.approx(zero)
    assert float(str(drawn["SMS, Billed: €0.05"].get("x"))) == pytest.approx(zero)


# -- what lost money ----------------------------------------------------------------------------


async def test_unprofitable_rows_worst_first_and_only_this_tenants(api: Api, acme: str) -> None:
    section = await Dashboard(api).section("unprofitable")
    assert rows(section) == [
        "When What Contact Size Billed Provider cost Margin Margin %",
        "7 Nov 2025 10:00 Call · Phone +33611111111 30 s €0.0000 €0.0500 -€0.0500 —",
        "5 Nov 2025 00:30 Message · SMS +33611111111 1 segment(s) €0.0700 €0.0800 -€0.0100 -14.29%",
    ]
    shares = text(section.split("<table>")[0])
    assert "Phone: 1 of 3 priced items lost money (33.33%), -€0.0500 in all" in shares
    assert "SMS: 1 of 2 priced items lost money (50.00%), -€0.0100 in all" in shares
    assert "1,100" not in section and "-€1100" not in section


# -- one contact --------------------------------------------------------------------------------


async def test_contact_timeline_newest_first_and_nothing_of_another_tenant(
    api: Api, acme: str
) -> None:
    dashboard = Dashboard(api)
    found = await dashboard.section("contact", "contact=%2B33611111111")
    assert text(found).count("Calls and messages of +33611111111, newest first") == 1
    assert rows(found, "timeline-rows") == [
        "7 Nov 2025 10:00 Call · Phone Received forwarded to the fallback number €0.0000 30 s",
        "6 Nov 2025 10:00 Call · Phone Received answered by the assistant €0.4500 3 min 00 s",
        "5 Nov 2025 10:00 Call · Phone Received answered by the assistant €0.3000 2 min 00 s",
        "5 Nov 2025 00:30 Message · SMS Sent failed €0.0700 Rappel",
        "3 Nov 2025 11:00 Message · SMS Sent delivered €0.0700 Bonjour Anne",
        "20 Oct 2025 12:00 Message · SMS Sent delivered €0.0700 —",
    ]
    assert "secret" not in found
    # a national number is read in the tenant's country (France, from Europe/Paris)
    national = await dashboard.section("contact", "contact=06+22+22+22+22")
    assert rows(national, "timeline-rows") == ["4 Nov 2025 11:00 Message · SMS Sent sent €0.0700 —"]
    nobody = await dashboard.section("contact", "contact=nobody%40example.org")
    assert "No call or message with this contact." in text(nobody)


async def test_contact_errors_are_the_apis_next_to_the_field(api: Api, acme: str) -> None:
    wrong = await Dashboard(api).section("contact", "contact=not+a+number", status=422)
    error = re.search(r'<p class="field-error" id="contact-error">(.*?)</p>', wrong)
    assert error and error[1].startswith("must be a phone number or an email address")
    assert 'aria-describedby="contact-hint contact-error" aria-invalid="true"' in wrong
    assert 'value="not a number"' in wrong
    long = await Dashboard(api).section("contact", "contact=" + "1" * 321, status=422)
    assert "at most 320 characters" in text(long)


async def test_contact_timeline_pages_on(api: Api) -> None:
    theta, key = await tenant(api, "theta")
    await insert(
        api,
        "channel_messages_log",
        theta,
        *[
            message(
                f"2025-11-{1 + n // 24:02d}T{n % 24:02d}:00:00.000Z",
                "delivered",
                body=f"message {n}",
            )
            for n in range(30)
        ],
    )
    await sign_in(api, key)
    first = await Dashboard(api).section("contact", "contact=%2B33611111111")
    shown = rows(first, "timeline-rows")
    assert len(shown) == 25 and shown[0].endswith("message 29") and shown[-1].endswith("message 5")
    more = re.search(r'hx-get="(/console/dashboard/contact\?[^"]+)"', first)
    assert more and "cursor=" in more[1]
    response = await api.client.get(html.unescape(more[1]), headers=HX)
    rest = [text(row) for row in re.findall(r"<tr>(.*?)</tr>", response.text, re.S)]
    assert [row.split()[-1] for row in rest] == ["4", "3", "2", "1", "0"]
    # the button goes: no older page
    assert '<div id="timeline-more" hx-swap-oob="true">' in response.text
    assert "Show older" not in response.text


async def test_a_bookmarked_contact_search_loads_with_the_page(api: Api, acme: str) -> None:
    page = await Dashboard(api).page("contact=%2B33611111111")
    assert 'hx-get="/console/dashboard/contact?contact=%2B33611111111"' in page


# -- the operator -------------------------------------------------------------------------------


async def test_operator_sees_the_tenant_it_opened(api: Api, acme: str) -> None:
    api.client.cookies.clear()
    await sign_in(api, ADMIN_KEY)
    before = await api.client.get("/console/dashboard")
    assert before.status_code == 303 and before.headers["location"] == "/console/tenants"
    opened = await api.client.get(f"/console/tenants/{acme}")
    assert opened.status_code == 303
    kpis = await Dashboard(api).section("kpis")
    assert card(kpis, "messages.total").startswith("Messages sent 3 ")
