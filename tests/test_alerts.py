"""Alerts: each rule fires on real rows and resolves when its condition stops holding, an
active alert is never duplicated, GET /admin/alerts lists and pages them, the monthly SMS
budget is an operator field with its bad inputs refused, and /metrics shows the figures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.ids import iso
from gateway.sandbox.twilio_webhooks import post_signed_form
from tests.alert_rows import NOW, add_messages, ago
from tests.conftest import AUTH_TOKEN, TWILIO, Api, running_api


@pytest.fixture
async def api(make_settings: Any) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def alerts(api: Api, **query: str) -> list[dict[str, Any]]:
    response = await api.client.get("/admin/alerts", params=query, headers=api.admin)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["alerts"]
    return found


def keyed(found: list[dict[str, Any]]) -> dict[tuple[str | None, str, str | None], Any]:
    return {(a["tenant_id"], a["rule"], a["subject"]): a for a in found}


async def tenant_id(api: Api, slug: str) -> str:
    tenant, _ = await api.create_tenant(slug)
    return str(tenant["id"])


async def test_failure_rate_fires_once_while_it_holds_and_resolves(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    await add_messages(api.gateway, acme, 18)
    await add_messages(api.gateway, acme, 1, status="failed")
    await add_messages(api.gateway, acme, 1, status="undelivered")
    # in flight, canceled and older than 24 h: not counted
    await add_messages(api.gateway, acme, 5, status="sending")
    await add_messages(api.gateway, acme, 5, status="failed", created_at=ago(hours=30))

    assert await api.gateway.alerts.evaluate(NOW) == {"opened": 2, "resolved": 0, "active": 2}
    first = keyed(await alerts(api, state="active"))
    assert set(first) == {(acme, "failure_rate_24h", None), (None, "failure_rate_24h", None)}
    alert = first[acme, "failure_rate_24h", None]
    assert (alert["value"], alert["threshold"], alert["state"]) == (10.0, 5.0, "active")
    assert alert["since"] == alert["last_seen"] and alert["resolved_at"] is None

    # still holding a minute later: the same alert, seen again, no second one
    await api.gateway.alerts.evaluate(NOW.replace(minute=1))
    again = keyed(await alerts(api))
    assert len(again) == 2 and again[acme, "failure_rate_24h", None]["id"] == alert["id"]
    assert again[acme, "failure_rate_24h", None]["last_seen"] > alert["since"]

    # 2 failed of 50 = 4 %: resolved
    await add_messages(api.gateway, acme, 30)
    assert await api.gateway.alerts.evaluate(NOW.replace(minute=2)) == {
        "opened": 0,
        "resolved": 2,
        "active": 0,
    }
    assert await alerts(api, state="active") == []
    resolved = keyed(await alerts(api, state="resolved"))[acme, "failure_rate_24h", None]
    assert resolved["id"] == alert["id"] and resolved["resolved_at"] is not None


async def test_few_messages_do_not_page(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    await add_messages(api.gateway, acme, 2)
    await add_messages(api.gateway, acme, 1, status="failed")  # 33 % of 3
    await api.gateway.alerts.evaluate(NOW)
    assert await alerts(api) == []


async def test_one_tenants_failures_alert_for_it_and_overall_only(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    calm = await tenant_id(api, "calm")
    await add_messages(api.gateway, acme, 15)
    await add_messages(api.gateway, acme, 5, status="failed")  # 25 %
    await add_messages(api.gateway, calm, 100)  # overall 5 of 120 = 4.17 %
    await api.gateway.alerts.evaluate(NOW)
    assert set(keyed(await alerts(api))) == {(acme, "failure_rate_24h", None)}


async def test_sms_budget_fires_above_the_budget_and_resolves_when_raised(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    patched = await api.client.patch(
        f"/admin/tenants/{acme}", json={"monthly_sms_budget_eur": 1.5}, headers=api.admin
    )
    assert patched.status_code == 200 and patched.json()["tenant"]["monthly_sms_budget_eur"] == 1.5
    await add_messages(api.gateway, acme, 20, billed_cost=0.07)  # 1.40 this month
    await add_messages(api.gateway, acme, 10, billed_cost=0.07, created_at=ago(days=20))
    await add_messages(api.gateway, acme, 5, channel="email", billed_cost=1.0)
    await api.gateway.alerts.evaluate(NOW)
    assert await alerts(api) == []

    await add_messages(api.gateway, acme, 3, billed_cost=0.07)  # 1.61
    await api.gateway.alerts.evaluate(NOW)
    (alert,) = await alerts(api)
    assert (alert["tenant_id"], alert["rule"], alert["value"], alert["threshold"]) == (
        acme,
        "sms_budget",
        1.61,
        1.5,
    )

    await api.client.patch(
        f"/admin/tenants/{acme}", json={"monthly_sms_budget_eur": 2}, headers=api.admin
    )
    await api.gateway.alerts.evaluate(NOW)
    assert await alerts(api, state="active") == []


@pytest.mark.parametrize(
    "budget", [-1, "12", True, "abc", 1e10, [1], {"eur": 1}], ids=lambda b: repr(b)
)
async def test_budget_bad_inputs_answer_422_and_change_nothing(api: Api, budget: Any) -> None:
    acme = await tenant_id(api, "acme")
    response = await api.client.patch(
        f"/admin/tenants/{acme}", json={"monthly_sms_budget_eur": budget}, headers=api.admin
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert [f["field"] for f in error["details"]["fields"]] == ["monthly_sms_budget_eur"]
    detail = await api.client.get(f"/admin/tenants/{acme}", headers=api.admin)
    assert detail.json()["tenant"]["monthly_sms_budget_eur"] is None


async def test_budget_null_removes_it_and_tenant_keys_cannot_set_it(api: Api) -> None:
    tenant, key = await api.create_tenant("acme")
    url = f"/admin/tenants/{tenant['id']}"
    await api.client.patch(url, json={"monthly_sms_budget_eur": 10}, headers=api.admin)
    cleared = await api.client.patch(url, json={"monthly_sms_budget_eur": None}, headers=api.admin)
    assert cleared.status_code == 200
    assert cleared.json()["tenant"]["monthly_sms_budget_eur"] is None
    refused = await api.client.patch(url, json={"monthly_sms_budget_eur": 10}, headers=key)
    assert refused.status_code in (401, 403)
    detail = await api.client.get(url, headers=api.admin)
    assert detail.json()["tenant"]["monthly_sms_budget_eur"] is None


async def test_loss_share_over_seven_days(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    await add_messages(
        api.gateway, acme, 18, billed_cost=0.07, provider_cost=0.05, margin=0.02,
        created_at=ago(days=3),
    )  # fmt: skip
    await add_messages(
        api.gateway, acme, 2, billed_cost=0.07, provider_cost=0.09, margin=-0.02,
        created_at=ago(days=6),
    )  # fmt: skip
    await add_messages(api.gateway, acme, 10, margin=-0.5, created_at=ago(days=8))
    await api.gateway.alerts.evaluate(NOW)
    found = keyed(await alerts(api))
    assert set(found) == {(acme, "loss_share_7d", None), (None, "loss_share_7d", None)}
    assert found[acme, "loss_share_7d", None]["value"] == 10.0

    # the losing ones leave the window
    later = NOW.replace(day=21, hour=13)
    await api.gateway.alerts.evaluate(later)
    assert await alerts(api, state="active") == []


async def test_expensive_destination(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    await add_messages(api.gateway, acme, 30, provider_cost=0.05, num_segments=1)
    # Jamaica (+1 876): 0.60 for two segments, 0.30 a segment
    await add_messages(
        api.gateway, acme, 2, to_address="+18765550100", provider_cost=0.6, num_segments=2
    )
    # the US (+1 212): cheap, although in the same calling code
    await add_messages(api.gateway, acme, 2, to_address="+12125550100", provider_cost=0.01)
    await api.gateway.alerts.evaluate(NOW)
    found = keyed(await alerts(api))
    assert set(found) == {
        (acme, "expensive_destination", "+1876"),
        (None, "expensive_destination", "+1876"),
    }
    assert found[acme, "expensive_destination", "+1876"]["value"] == 0.3
    assert found[acme, "expensive_destination", "+1876"]["threshold"] == 0.2


async def test_three_rejected_provider_webhooks_in_a_row_then_a_good_one(api: Api) -> None:
    url = "https://gateway.test/webhooks/twilio/status"
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    for _ in range(2):
        assert (await api.client.post(url, data=params)).status_code == 403
    await api.gateway.alerts.evaluate(NOW)
    assert await alerts(api) == []  # two in a row are not three

    forged = await post_signed_form(api.client, url, params, "not-the-auth-token")
    assert forged.status_code == 403
    await api.gateway.alerts.evaluate(NOW)
    (alert,) = await alerts(api)
    assert (alert["tenant_id"], alert["rule"], alert["subject"], alert["value"]) == (
        None,
        "webhook_failures",
        "in:twilio",
        3.0,
    )
    # an unknown provider is nobody's webhook: it adds to no run
    assert (await api.client.post("/webhooks/nobody/status", data=params)).status_code == 404

    genuine = await post_signed_form(api.client, url, params, AUTH_TOKEN)
    assert genuine.status_code < 300, genuine.text
    await api.gateway.alerts.evaluate(NOW)
    assert await alerts(api, state="active") == []


async def test_list_pages_newest_first(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    await add_messages(api.gateway, acme, 20, status="failed", margin=-1.0)
    await api.gateway.alerts.evaluate(NOW)  # failure rate and loss share, acme and overall
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await api.client.get("/admin/alerts", params=query, headers=api.admin)
        page = response.json()
        seen += [a["id"] for a in page["alerts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    "query",
    [{"state": "open"}, {"limit": "0"}, {"limit": "201"}, {"cursor": "not-a-cursor"}],
)
async def test_list_bad_queries_answer_422(api: Api, query: dict[str, str]) -> None:
    response = await api.client.get("/admin/alerts", params=query, headers=api.admin)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"


async def test_list_needs_the_operator_key(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    assert (await api.client.get("/admin/alerts")).status_code == 401
    assert (await api.client.get("/admin/alerts", headers=key)).status_code in (401, 403)


async def test_gauges_show_the_last_evaluation(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    await api.client.patch(
        f"/admin/tenants/{acme}", json={"monthly_sms_budget_eur": 4}, headers=api.admin
    )
    await add_messages(api.gateway, acme, 19, billed_cost=0.1)
    await add_messages(api.gateway, acme, 1, status="failed", billed_cost=0.1, margin=-0.01)
    await api.gateway.alerts.evaluate(NOW)
    text = (await api.client.get("/metrics")).text
    assert f'gateway_failure_rate_24h_percent{{tenant="{acme}"}} 5.0' in text
    assert 'gateway_failure_rate_24h_percent{tenant="overall"} 5.0' in text
    assert f'gateway_sms_cost_month_eur{{tenant="{acme}"}} 2.0' in text
    assert f'gateway_sms_budget_used_ratio{{tenant="{acme}"}} 0.5' in text
    assert f'gateway_loss_share_7d_percent{{tenant="{acme}"}} 100.0' in text
    assert 'gateway_alerts_active{rule="loss_share_7d"} 0.0' in text  # 1 priced: too few
    assert 'gateway_alerts_active{rule="failure_rate_24h"} 0.0' in text  # 5 % is not > 5 %

    await add_messages(api.gateway, acme, 1, status="failed", billed_cost=0.1)
    await api.gateway.alerts.evaluate(NOW)
    text = (await api.client.get("/metrics")).text
    assert 'gateway_alerts_active{rule="failure_rate_24h"} 2.0' in text


async def test_a_good_webhook_between_failures_starts_the_count_again(api: Api) -> None:
    url = "https://gateway.test/webhooks/twilio/status"
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    for signed in (False, False, True, False, False):
        if signed:
            response = await post_signed_form(api.client, url, params, AUTH_TOKEN)
            assert response.status_code < 300
        else:
            assert (await api.client.post(url, data=params)).status_code == 403
    await api.gateway.alerts.evaluate(NOW)
    assert await alerts(api) == []


async def test_the_cron_job_evaluates_each_scheduled_minute_once(api: Api) -> None:
    acme = await tenant_id(api, "acme")
    hour_ago = iso(datetime.now(UTC) - timedelta(hours=1))
    await add_messages(api.gateway, acme, 20, status="failed", created_at=hour_ago)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    assert await api.gateway.alert_schedule.run_at(minute) is True
    assert {a["rule"] for a in await alerts(api, state="active")} == {"failure_rate_24h"}
    # the same minute again (another instance's scheduler): already claimed, not run
    assert await api.gateway.alert_schedule.run_at(minute) is False
    # the reminders' tick of that minute is a job of its own: not claimed by the alerts
    assert await api.gateway.scheduler.run_at(minute) is True


async def test_a_flood_of_unsigned_webhooks_writes_only_until_the_run_pages(api: Api) -> None:
    """Forged or unsigned webhooks cost no write each once their run is long enough to page:
    200 of them are at most a few writes, and the alert still fires with the run's length as
    it was last written."""
    url = "https://gateway.test/webhooks/twilio/status"
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    db = api.gateway.db
    write_fn = db.write_fn
    writes = 0

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal writes
        writes += 1
        return await write_fn(fn, *args, **kwargs)

    db.write_fn = counted  # type: ignore[method-assign]
    try:
        for _ in range(200):
            assert (await api.client.post(url, data=params)).status_code == 403
    finally:
        db.write_fn = write_fn  # type: ignore[method-assign]
    assert writes == 3
    await api.gateway.alerts.evaluate(NOW)
    (alert,) = await alerts(api)
    assert (alert["rule"], alert["subject"], alert["value"]) == ("webhook_failures", "in:twilio", 3)
    # a genuine webhook ends the run (and the quiet): the next failures count from one again
    genuine = await post_signed_form(api.client, url, params, AUTH_TOKEN)
    assert genuine.status_code < 300, genuine.text
    assert (await api.client.post(url, data=params)).status_code == 403
    row = await db.fetchone(
        "SELECT consecutive_failures FROM webhook_health WHERE source = 'in:twilio'"
    )
    assert row is not None and row["consecutive_failures"] == 1
