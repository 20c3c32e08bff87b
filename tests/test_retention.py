"""Retention (RETENTION_DAYS): texts, transcripts and raw payloads older than the retention
are removed by the cron job, in bounded batches, keeping the money and counts: KPIs of the
old period do not move, recent rows keep everything, and a second run does nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.ids import iso
from tests.conftest import Api, running_api
from tests.test_erasure import ANNE, event, insert, message

OLD_DAYS, RECENT_DAYS = 800, 100  # the default retention is 730 days


def ago(days: float) -> str:
    return iso(datetime.now(UTC) - timedelta(days=days))


def around(days: int) -> dict[str, str]:
    """A period of 20 days around `days` ago."""
    today = date.today()
    start, end = today - timedelta(days=days + 10), today - timedelta(days=days - 10)
    return {"start": start.isoformat(), "end": end.isoformat()}


async def kpis(api: Api, key: dict[str, str], days: int) -> list[Any]:
    figures = []
    for path in ("/api/metrics/messages", "/api/metrics/calls"):
        response = await api.client.get(path, params=around(days), headers=key)
        assert response.status_code == 200, response.text
        figures.append(response.json())
    return figures


async def history(api: Api, tenant_id: str, days: int) -> tuple[str, str]:
    sms = await message(api, tenant_id, ANNE, body=f"body {days}", created_at=ago(days))
    await event(api, tenant_id, sms, json.dumps({"Body": f"body {days}"}))
    call = await insert(
        api,
        "call_logs",
        tenant_id,
        call_sid=f"CA{days:032d}{tenant_id[-4:]}",
        from_number=ANNE,
        to_number="+33939035761",
        outcome="bridged",
        duration_seconds=60.0,
        billed_cost=0.3,
        provider_cost=0.1,
        margin=0.2,
        transcript=f"transcript {days}",
        summary=f"summary {days}",
        recording_url=f"https://storage.example/{days}.mp3",
        metadata="{}",
        created_at=ago(days),
    )
    return sms, call


async def texts(api: Api, sms: str, call: str) -> tuple[Any, ...]:
    message_row = await api.gateway.db.fetchone(
        "SELECT body, to_address, billed_cost FROM channel_messages_log WHERE id = ?", (sms,)
    )
    event_row = await api.gateway.db.fetchone(
        "SELECT payload FROM message_events WHERE message_id = ?", (sms,)
    )
    call_row = await api.gateway.db.fetchone(
        "SELECT transcript, summary, recording_url, from_number, billed_cost FROM call_logs "
        "WHERE id = ?",
        (call,),
    )
    return (*message_row, event_row[0], *call_row)


async def test_old_texts_go_recent_stay_kpis_do_not_move_and_a_second_run_does_nothing(
    api: Api,
) -> None:
    tenant, key = await api.create_tenant("acme")
    old = await history(api, tenant["id"], OLD_DAYS)
    recent = await history(api, tenant["id"], RECENT_DAYS)
    before = (await kpis(api, key, OLD_DAYS), await kpis(api, key, RECENT_DAYS))
    assert before[0][0]["current_period"]["total"] == 1

    counts = await api.gateway.retention.run()
    assert counts == {"channel_messages_log": 1, "message_events": 1, "call_logs": 1}
    assert await texts(api, *old) == (None, ANNE, 0.08, "{}", None, None, None, ANNE, 0.3)
    assert await texts(api, *recent) == (
        f"body {RECENT_DAYS}",
        ANNE,
        0.08,
        json.dumps({"Body": f"body {RECENT_DAYS}"}),
        f"transcript {RECENT_DAYS}",
        f"summary {RECENT_DAYS}",
        f"https://storage.example/{RECENT_DAYS}.mp3",
        ANNE,
        0.3,
    )
    assert (await kpis(api, key, OLD_DAYS), await kpis(api, key, RECENT_DAYS)) == before

    assert set((await api.gateway.retention.run()).values()) == {0}
    listed = await api.client.get(
        "/admin/erasures", params={"kind": "retention"}, headers=api.admin
    )
    runs = listed.json()["erasures"]
    assert [(r["kind"], r["tenant_id"], r["counts"]) for r in runs] == [
        ("retention", None, counts)
    ], "a run that scrubbed nothing is not recorded"
    assert runs[0]["older_than"] < ago(729)


async def test_work_is_done_in_bounded_batches_across_runs(api: Api) -> None:
    tenant, _ = await api.create_tenant("acme")
    other, _ = await api.create_tenant("other")
    same_instant = ago(OLD_DAYS)  # ties on created_at are ordered by id
    ids = [
        await message(api, owner["id"], ANNE, body="old", created_at=same_instant)
        for owner in (tenant, other)
        for _ in range(4)
    ]
    api.gateway.retention.batch = 3
    api.gateway.retention.max_batches = 2
    scrubbed = []
    for _ in range(4):
        scrubbed.append((await api.gateway.retention.run())["channel_messages_log"])
    # at most 2 batches of 3 a run: 3 + 1 for the first tenant (its second batch is short),
    # then 3 + 1 for the other
    assert scrubbed == [4, 4, 0, 0]
    rows = await api.gateway.db.fetchall(
        "SELECT body FROM channel_messages_log WHERE id IN ({})".format(", ".join("?" * 8)), ids
    )
    assert [row[0] for row in rows] == [None] * 8


async def test_the_cron_job_runs_each_minute_once_and_records_its_counts(api: Api) -> None:
    tenant, _ = await api.create_tenant("acme")
    await history(api, tenant["id"], OLD_DAYS)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    schedule = api.gateway.retention_schedule
    assert await schedule.run_at(minute) is True
    assert await schedule.run_at(minute) is False, "claimed: another instance skips it"
    row = await api.gateway.db.fetchone(
        "SELECT outcome FROM cron_runs WHERE job = 'retention' AND scheduled_at = ?",
        (iso(minute),),
    )
    assert json.loads(row[0]) == {"channel_messages_log": 1, "message_events": 1, "call_logs": 1}


async def test_off_keeps_everything(make_settings: Callable[..., Settings]) -> None:
    async with running_api(make_settings(RETENTION_DAYS="off")) as api:
        tenant, _ = await api.create_tenant("acme")
        old = await history(api, tenant["id"], OLD_DAYS)
        assert api.gateway.retention_schedule.crons == []
        assert await api.gateway.retention.run() == {}
        assert (await texts(api, *old))[0] == f"body {OLD_DAYS}"


async def test_a_shorter_retention_reaches_younger_rows(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_api(make_settings(RETENTION_DAYS="30")) as api:
        tenant, _ = await api.create_tenant("acme")
        old = await history(api, tenant["id"], 40)
        recent = await history(api, tenant["id"], 20)
        await api.gateway.retention.run()
        assert (await texts(api, *old))[0] is None
        assert (await texts(api, *recent))[0] == "body 20"


@pytest.mark.parametrize("value", ["0", "-5", "two years", "1.5"])
def test_a_bad_retention_is_refused_at_start(
    make_settings: Callable[..., Settings], value: str
) -> None:
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        make_settings(RETENTION_DAYS=value).typed  # noqa: B018
