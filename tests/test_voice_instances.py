"""One Vapi call per Twilio call across instances (issue 11 §3): Twilio retries a slow voice
webhook, and behind a load balancer the retries land on other gateways. Whichever instance
gets a request for a CallSid, the caller is bridged once and every answer is the first one.

Two gateways on one database, each with its own event loop and its own in-process state,
are two instances as far as the CallSid claim is concerned: only the call log they share
can make them agree."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from gateway.config import load_settings
from gateway.sandbox.server import ServerThread
from gateway.sandbox.twilio_webhooks import post_signed_form, voice_call_params
from gateway.sandbox.vapi_api import VapiSandbox
from gateway.services.tenants import create_tenant
from gateway.wiring import Gateway
from tests import postgres
from tests.conftest import ADMIN_KEY, KEY_A, ROOT
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, SHARED_NUMBER, Stack, running_stack
from tests.test_voice import CALLER, VAPI_KEY, Voice, assert_bridged, make_tenant

# Vapi slower than Twilio's patience with the first request, within the gateway's bridge
# budget: the retries arrive while the first answer is still being made
VAPI_LATENCY = 0.6
RETRIES_EACH = 3


@pytest.fixture
def slow_vapi() -> Iterator[tuple[VapiSandbox, str]]:
    sandbox = VapiSandbox(VAPI_KEY, VAPI_LATENCY)
    with ServerThread(sandbox.app) as server:
        yield sandbox, server.base_url


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings that put both gateways on one database: one SQLite file (not a supported
    deployment, but the same call log) or one PostgreSQL database."""
    if request.param == "postgres":
        return {"DATABASE_URL": request.getfixturevalue("postgres_url")}
    if postgres.test_engine() == "postgres":
        pytest.skip("the SQLite case runs in the SQLite pass")
    return {}


def _gateway(tmp_path: Path, vapi_url: str, database: dict[str, str]) -> Any:
    return running_stack(
        tmp_path,
        VAPI_API_BASE=vapi_url,
        VAPI_API_KEY=VAPI_KEY,
        VOICE_BRIDGE_TIMEOUT_SECONDS="3",
        DISPATCHER="off",
        **database,
    )


async def _voice_webhook(http: httpx.AsyncClient, stack: Stack, params: dict[str, str]) -> Any:
    return await post_signed_form(http, f"{stack.url}/webhooks/twilio/voice", params, AUTH_TOKEN)


async def test_retries_on_two_instances_make_one_vapi_call_and_get_one_answer(
    tmp_path: Path, slow_vapi: tuple[VapiSandbox, str], database: dict[str, str]
) -> None:
    vapi, vapi_url = slow_vapi
    with (
        _gateway(tmp_path, vapi_url, database) as first,
        _gateway(tmp_path, vapi_url, database) as second,
    ):
        async with first.client() as http:  # absolute URLs reach the second one
            tenant = await make_tenant(Voice(first, vapi, http))
            params = voice_call_params(CALLER, SHARED_NUMBER, ACCOUNT_SID, tenant.forwarding)
            at_once = await asyncio.gather(
                *(
                    _voice_webhook(http, stack, params)
                    for _ in range(RETRIES_EACH)
                    for stack in (first, second)
                )
            )
            later = [await _voice_webhook(http, stack, params) for stack in (second, first)]
            listed = await http.get(f"{second.url}/api/calls", headers=tenant.key)
    answers = [*at_once, *later]
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert len(vapi.calls) == 1, "one Vapi call for one CallSid, whichever instance answered"
    assert len({a.text for a in answers}) == 1, "every retry gets the first answer's TwiML"
    assert_bridged(ET.fromstring(answers[0].content), vapi.calls[0])
    assert listed.status_code == 200, listed.text
    [logged] = listed.json()["calls"]
    assert logged["call_sid"] == params["CallSid"] and logged["outcome"] == "bridged"


async def _blocked_on_a_lock(url: str) -> None:
    """Until a statement of the gateway waits for a lock another transaction holds."""
    with psycopg.connect(url, autocommit=True) as watcher:
        for _ in range(400):
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0]:
                return
            await asyncio.sleep(0.025)
    raise AssertionError("the report never waited for the other instance's row")


async def test_reports_of_one_unknown_vapi_call_on_two_instances_record_it_once(
    postgres_url: str,
) -> None:
    # Vapi reports a call no voice webhook logged (a number imported into Vapi): its status
    # update and its end-of-call report reach two instances at once, both find no row
    environ = {
        "ADMIN_API_KEY": ADMIN_KEY,
        "ENCRYPTION_KEYS": f"k1:{KEY_A}",
        "DATABASE_URL": postgres_url,
        "DISPATCHER": "off",
    }
    gateway = Gateway(load_settings(ROOT / "wrangler_like.toml", environ=environ))
    await gateway.start()
    try:
        tenant, _ = await create_tenant(gateway.db, "Cabinet", "cabinet", "Europe/Paris")
        vapi_call_id = "7d0e3f4a-reported-by-vapi-only"
        with psycopg.connect(postgres_url) as other:  # the other instance, not committed yet
            other.execute(
                "INSERT INTO call_logs (id, tenant_id, vapi_call_id, status, metadata, "
                "created_at, updated_at) VALUES ('call_other', %s, %s, 'in-progress', '{}', "
                "'2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                (tenant.id, vapi_call_id),
            )
            report = asyncio.ensure_future(
                gateway.voice.update_vapi_call(
                    tenant.id, vapi_call_id, {"status": "ended", "ended_reason": "hangup"}
                )
            )
            await _blocked_on_a_lock(postgres_url)
            other.commit()
        await report  # applied, not a unique violation
        rows = await gateway.db.fetchall(
            "SELECT id, status, ended_reason FROM call_logs WHERE vapi_call_id = ?",
            (vapi_call_id,),
        )
    finally:
        await gateway.stop()
    assert [dict(r) for r in rows] == [
        {"id": "call_other", "status": "ended", "ended_reason": "hangup"}
    ]
