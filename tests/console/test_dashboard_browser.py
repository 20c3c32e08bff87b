"""The dashboard in a browser (Debian's chromium through Playwright, tests/console/conftest.py):
the nav's "Dashboard" link, the KPI cards and both charts loaded by htmx, the period switch,
one contact's timeline, French numbers after the language switch; every page fixture fails
on a console error or on any request that leaves loopback."""

from __future__ import annotations

import re
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import expect

from gateway.ids import iso
from tests.console.conftest import Console, htmx_click, sign_in
from tests.console.test_accessibility import CHECK

ANNE = "+33611111111"


def _seed(console: Console, tenant_id: str) -> None:
    """Today: 3 SMS to Anne (2 delivered, one of them billed 1,234.56 €; 1 failed) and a
    call from her; 20 days ago: 2 delivered SMS to someone else. So the last 7 days hold 3
    messages (66.67 % delivered, 1,234.70 € billed) and the last 30 days 5."""
    now = datetime.now(UTC)
    recent, older = now - timedelta(hours=1), now - timedelta(days=20)
    messages = [
        (recent, ANNE, "delivered", 1234.56, 1000.0, 234.56, "Bonjour Anne"),
        (recent + timedelta(minutes=1), ANNE, "delivered", 0.07, 0.05, 0.02, "Rappel demain"),
        (recent + timedelta(minutes=2), ANNE, "failed", 0.07, 0.09, -0.02, "Dernier rappel"),
        (older, "+33622222222", "delivered", 0.07, 0.05, 0.02, "Bonjour"),
        (older + timedelta(minutes=1), "+33622222222", "delivered", 0.07, 0.05, 0.02, "Merci"),
    ]
    path = console.stack.app.state.gateway.settings.database_path
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            for when, to, status, billed, cost, margin, body in messages:
                conn.execute(
                    "INSERT INTO channel_messages_log (id, tenant_id, channel, direction, "
                    "to_address, body, message_type, status, num_segments, billed_cost, "
                    "provider_cost, margin, metadata, created_at, updated_at) VALUES (?, ?, "
                    "'sms', 'outbound', ?, ?, 'transactional', ?, 1, ?, ?, ?, '{}', ?, ?)",
                    (
                        f"msg_{secrets.token_hex(8)}",
                        tenant_id,
                        to,
                        body,
                        status,
                        billed,
                        cost,
                        margin,
                        iso(when),
                        iso(when),
                    ),
                )
            conn.execute(
                "INSERT INTO call_logs (id, tenant_id, call_sid, from_number, to_number, status, "
                "outcome, duration_seconds, billed_cost, provider_cost, margin, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, '+33939035761', 'completed', 'bridged', 95, "
                "0.3, 0.1, 0.2, ?, ?)",
                (
                    f"call_{secrets.token_hex(8)}",
                    tenant_id,
                    f"CA{secrets.token_hex(16)}",
                    ANNE,
                    iso(recent),
                    iso(recent),
                ),
            )
    finally:
        conn.close()


def _open_dashboard(page: Any, console: Console) -> None:
    tenant, key = console.tenant("Cabinet Dupont")
    _seed(console, tenant["id"])
    sign_in(page, key)
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/console/dashboard")
    _sections_loaded(page)


def _sections_loaded(page: Any) -> None:
    for section in ("#kpis .kpi", "#delivery svg", "#money svg", "#unprofitable p"):
        page.locator(section).first.wait_for()
    # a section swapped in last may still be busy when the others have shown: wait for it
    expect(page.locator("[aria-busy=true]")).to_have_count(0)


def _card(page: Any, key: str) -> Any:
    return page.locator(f'[data-kpi="{key}"]')


def test_dashboard_link_shows_kpis_and_both_charts(page: Any, console: Console) -> None:
    _open_dashboard(page, console)
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.get_by_role("link", name="Last 30 days")).to_have_attribute("aria-current", "true")
    expect(_card(page, "messages.total").locator(".kpi-value")).to_have_text("5")
    expect(_card(page, "messages.delivery_rate").locator(".kpi-value")).to_have_text("80.00%")
    expect(_card(page, "calls.calls").locator(".kpi-value")).to_have_text("1")
    delivery = page.get_by_role("img", name="Delivery rate per day")
    expect(delivery).to_be_visible()
    assert delivery.locator("circle").count() == 2  # two days with messages out of 30
    money = page.get_by_role("img", name="Billed, provider cost and margin by channel")
    expect(money).to_be_visible()
    expect(money.locator("text", has_text="€1,234.84")).to_have_count(1)
    expect(page.locator("#money tbody tr").first).to_contain_text("SMS")
    expect(page.locator("#unprofitable tbody tr")).to_have_count(1)
    expect(page.locator("#unprofitable tbody tr")).to_contain_text("-€0.0200")
    problems = page.evaluate(CHECK)
    assert problems == [], problems


def test_period_switch_and_custom_period(page: Any, console: Console) -> None:
    _open_dashboard(page, console)
    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url(re.compile(r"period=7$"))
    _sections_loaded(page)
    expect(page.get_by_role("link", name="Last 7 days")).to_have_attribute("aria-current", "true")
    expect(_card(page, "messages.total").locator(".kpi-value")).to_have_text("3")
    expect(_card(page, "messages.total")).to_contain_text("previous period: 0")
    expect(_card(page, "messages.delivery_rate").locator(".kpi-value")).to_have_text("66.67%")
    page.locator("#delivery summary").click()
    expect(page.locator("#delivery tbody tr")).to_have_count(7)

    today = datetime.now(UTC).date()
    page.get_by_label("From").fill((today - timedelta(days=25)).isoformat())
    page.get_by_label("To (included)").fill((today - timedelta(days=15)).isoformat())
    page.get_by_role("button", name="Show", exact=True).click()
    page.wait_for_url(re.compile(r"period=custom"))
    _sections_loaded(page)
    expect(_card(page, "messages.total").locator(".kpi-value")).to_have_text("2")
    expect(page.locator("#period-summary")).to_contain_text("compared with")

    page.get_by_label("From").fill(today.isoformat())
    page.get_by_label("To (included)").fill((today - timedelta(days=3)).isoformat())
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.locator("#period-from-error")).to_contain_text("must be before end")
    expect(page.get_by_label("From")).to_have_attribute("aria-invalid", "true")


def test_contact_search_shows_the_timeline(page: Any, console: Console) -> None:
    _open_dashboard(page, console)
    search = page.get_by_label("Phone or email")
    search.fill("06 11 11 11 11")  # national: read in the tenant's country
    htmx_click(page, page.get_by_role("button", name="Search"))
    expect(
        page.get_by_role("heading", name=f"Calls and messages of {ANNE}, newest first")
    ).to_be_visible()
    rows = page.locator("#timeline-rows tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(0)).to_contain_text("Dernier rappel")
    expect(rows.nth(3)).to_contain_text("answered by the assistant")
    expect(page.locator("#timeline-rows")).not_to_contain_text("Merci")
    page.get_by_label("Phone or email").fill("nobody at all")
    htmx_click(page, page.get_by_role("button", name="Search"))
    expect(page.locator("#contact-error")).to_contain_text(
        "must be a phone number or an email address"
    )
    expect(page.get_by_label("Phone or email")).to_have_attribute("aria-invalid", "true")


def test_french_switch_shows_french_numbers(page: Any, console: Console) -> None:
    _open_dashboard(page, console)
    page.get_by_role("link", name="Français").click()
    page.wait_for_url("**/console/dashboard")
    _sections_loaded(page)
    expect(page.locator("h1")).to_have_text("Tableau de bord")
    billed = _card(page, "messages.total_revenue")
    expect(billed.locator(".kpi-label")).to_have_text("Facturé")
    # a narrow no-break space groups the thousands, a comma marks the decimals
    expect(billed.locator(".kpi-value")).to_have_text("1\u202f234,84\u00a0€")
    expect(_card(page, "messages.delivery_rate").locator(".kpi-value")).to_have_text("80,00\u202f%")
    expect(page.get_by_role("img", name="Taux de remise par jour")).to_be_visible()
    expect(page.locator("#unprofitable tbody tr")).to_contain_text("-0,0200\u00a0€")
    problems = page.evaluate(CHECK)
    assert problems == [], problems
