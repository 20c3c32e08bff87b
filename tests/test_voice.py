"""The inbound voice path end to end: Twilio's signed voice webhook into the gateway under
uvicorn, the gateway bridging to the Vapi emulator, and what the caller gets back."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.providers.vapi.client import VapiClient
from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.twilio_webhooks import post_signed_form, voice_call_params
from gateway.sandbox.vapi_api import VapiSandbox
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, SHARED_NUMBER, Stack, running_stack

VAPI_KEY = "vapi-private-key-0123456789"
ASSISTANT_ID = "b33d016a-db85-4e34-801b-5f7a175a077e"
PHONE_NUMBER_ID = "3c5e3b0a-0f1b-4a57-9a40-0d1f6f1a2b3c"
CALLER = "+33601020304"
FALLBACK = "+33198765432"
_numbers = itertools.count(1)


@dataclass
class Voice:
    stack: Stack
    vapi: VapiSandbox
    http: httpx.AsyncClient


@dataclass
class Tenant:
    id: str
    slug: str
    key: dict[str, str]
    forwarding: str
    dedicated: str


@pytest.fixture(scope="module")
def vapi() -> Iterator[tuple[VapiSandbox, str]]:
    sandbox = VapiSandbox(VAPI_KEY, hang_seconds=10.0)
    with ServerThread(sandbox.app) as server:
        yield sandbox, server.base_url


def _stack(tmp_path: Path, vapi_url: str, **extra: str) -> Any:
    return running_stack(
        tmp_path,
        VAPI_API_BASE=vapi_url,
        VAPI_API_KEY=VAPI_KEY,
        VOICE_BRIDGE_TIMEOUT_SECONDS="1",
        DISPATCHER="off",
        **extra,
    )


@pytest.fixture(scope="module")
def shared_stack(
    tmp_path_factory: pytest.TempPathFactory, vapi: tuple[VapiSandbox, str]
) -> Iterator[Stack]:
    # one gateway for the module: every test makes its own tenant with its own numbers
    with _stack(tmp_path_factory.mktemp("voice"), vapi[1]) as stack:
        yield stack


@pytest.fixture
async def voice(shared_stack: Stack, vapi: tuple[VapiSandbox, str]) -> Any:
    vapi[0].reset()
    async with shared_stack.client() as http:
        yield Voice(shared_stack, vapi[0], http)


async def make_tenant(
    v: Voice,
    *,
    fallback: str | None = FALLBACK,
    enable: bool = True,
    assistant: str | None = ASSISTANT_ID,
) -> Tenant:
    n = next(_numbers)
    slug = f"cabinet-{n}"
    forwarding, dedicated = f"+336120{n:05d}", f"+339390{n:05d}"
    created = await v.http.post(
        "/admin/tenants", json={"name": f"Cabinet {n}", "slug": slug}, headers=v.stack.admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    tenant_id, key = body["tenant"]["id"], {"Authorization": f"Bearer {body['api_key']}"}
    operator: dict[str, Any] = {
        "vapi_phone_number_id": PHONE_NUMBER_ID,
        "dedicated_numbers": [dedicated],
    }
    if assistant:
        operator["vapi_assistant_id"] = assistant
    response = await v.http.put(
        f"/admin/tenants/{tenant_id}/channels/phone/config", json=operator, headers=v.stack.admin
    )
    assert response.status_code == 200, response.text
    settings: dict[str, Any] = {"forwarding_numbers": [forwarding]}
    if fallback:
        settings["fallback_number"] = fallback
    response = await v.http.put("/api/channels/phone/config", json=settings, headers=key)
    assert response.status_code == 200, response.text
    if enable:
        response = await v.http.post(
            "/api/channels/phone/toggle", json={"enabled": True}, headers=key
        )
        assert response.status_code == 200, response.text
    return Tenant(tenant_id, slug, key, forwarding, dedicated)


async def call(
    v: Voice,
    *,
    to: str = SHARED_NUMBER,
    forwarded_from: str | None = None,
    sip_headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[ET.Element, dict[str, str]]:
    params = params or voice_call_params(
        CALLER, to, ACCOUNT_SID, forwarded_from=forwarded_from, sip_headers=sip_headers
    )
    response = await post_signed_form(
        v.http, f"{v.stack.url}/webhooks/twilio/voice", params, AUTH_TOKEN
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.content), params


async def logged(v: Voice, call_sid: str) -> list[dict[str, Any]]:
    rows = await v.stack.app.state.gateway.db.fetchall(
        "SELECT * FROM call_logs WHERE call_sid = ?", (call_sid,)
    )
    return [dict(r) for r in rows]


def verbs(twiml: ET.Element) -> list[str]:
    return [child.tag for child in twiml]


def assert_bridged(twiml: ET.Element, vapi_call: dict[str, Any]) -> None:
    stream = twiml.find("./Connect/Stream")
    assert stream is not None, ET.tostring(twiml)
    assert stream.get("url", "").endswith(f"/{vapi_call['id']}/transport")


def assert_polite_hangup(twiml: ET.Element) -> None:
    assert verbs(twiml) == ["Say", "Hangup"]
    say = twiml.find("Say")
    assert say is not None and say.text and say.get("language") == "fr-FR"


async def test_a_forwarded_call_is_bridged_to_the_tenants_assistant(voice: Voice) -> None:
    tenant = await make_tenant(voice)

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    assert len(voice.vapi.calls) == 1
    vapi_call = voice.vapi.calls[0]
    assert_bridged(twiml, vapi_call)
    assert vapi_call["assistantId"] == ASSISTANT_ID
    assert vapi_call["phoneNumberId"] == PHONE_NUMBER_ID
    assert vapi_call["phoneCallProviderBypassEnabled"] is True
    assert vapi_call["customer"] == {"number": CALLER}
    assert vapi_call["metadata"]["tenant_id"] == tenant.id
    assert vapi_call["metadata"]["call_sid"] == params["CallSid"]
    assert vapi_call["assistantOverrides"]["metadata"]["tenant_id"] == tenant.id
    [row] = await logged(voice, params["CallSid"])
    assert row["tenant_id"] == tenant.id
    assert (row["resolved_by"], row["outcome"]) == ("forwarded_from", "bridged")
    assert row["vapi_call_id"] == vapi_call["id"]
    assert row["assistant_id"] == ASSISTANT_ID
    assert row["from_number"] == CALLER and row["to_number"] == SHARED_NUMBER
    assert row["forwarded_from"] == tenant.forwarding


@pytest.mark.parametrize(
    ("how", "rule"),
    [("dedicated", "dedicated_number"), ("sip", "sip_header"), ("sip_id", "sip_header")],
)
async def test_the_tenant_is_found_without_forwarded_from(
    voice: Voice, how: str, rule: str
) -> None:
    tenant = await make_tenant(voice)
    if how == "dedicated":
        twiml, params = await call(voice, to=tenant.dedicated)
    else:
        ref = tenant.slug if how == "sip" else tenant.id
        twiml, params = await call(voice, sip_headers={"X-Tenant": ref})

    [vapi_call] = voice.vapi.calls
    assert_bridged(twiml, vapi_call)
    assert vapi_call["metadata"]["tenant_id"] == tenant.id
    [row] = await logged(voice, params["CallSid"])
    assert (row["tenant_id"], row["resolved_by"], row["outcome"]) == (tenant.id, rule, "bridged")


@pytest.mark.parametrize("how", ["unknown_forwarded_from", "forwarding_number_as_to", "nothing"])
async def test_an_unknown_tenant_hears_a_polite_message(voice: Voice, how: str) -> None:
    tenant = await make_tenant(voice)
    if how == "unknown_forwarded_from":
        twiml, params = await call(voice, forwarded_from="+33612999999")
    elif how == "forwarding_number_as_to":
        # a forwarding number is not dedicated: called directly, it says nothing of a tenant
        twiml, params = await call(voice, to=tenant.forwarding)
    else:
        twiml, params = await call(voice, sip_headers={"X-Tenant": "no-such-tenant"})

    assert_polite_hangup(twiml)
    assert voice.vapi.calls == []
    [row] = await logged(voice, params["CallSid"])
    assert row["tenant_id"] is None
    assert (row["resolved_by"], row["outcome"]) == ("none", "unknown_tenant")


async def test_the_default_tenant_takes_calls_no_rule_matched(
    tmp_path: Path, vapi: tuple[VapiSandbox, str]
) -> None:
    sandbox, vapi_url = vapi
    sandbox.reset()
    with _stack(tmp_path, vapi_url, DEFAULT_TENANT="cabinet-default") as stack:
        async with stack.client() as http:
            created = await http.post(
                "/admin/tenants",
                json={"name": "Default", "slug": "cabinet-default"},
                headers=stack.admin,
            )
            tenant_id = created.json()["tenant"]["id"]
            v = Voice(stack, sandbox, http)
            other = await make_tenant(v)

            twiml, params = await call(v)
            [row] = await logged(v, params["CallSid"])
            # the default tenant's phone channel is off: it answers for it, politely
            assert_polite_hangup(twiml)
            assert (row["tenant_id"], row["resolved_by"]) == (tenant_id, "default")
            assert row["outcome"] == "channel_disabled"

            # a rule that matches still wins over the default
            _, params = await call(v, forwarded_from=other.forwarding)
            [row] = await logged(v, params["CallSid"])
            assert (row["tenant_id"], row["resolved_by"]) == (other.id, "forwarded_from")


async def test_a_phone_channel_that_is_off_hears_an_apology(voice: Voice) -> None:
    tenant = await make_tenant(voice, enable=False)

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    assert_polite_hangup(twiml)
    assert voice.vapi.calls == []
    [row] = await logged(voice, params["CallSid"])
    assert (row["tenant_id"], row["outcome"]) == (tenant.id, "channel_disabled")


@pytest.mark.parametrize("fault", ["500", "hang"])
async def test_when_vapi_fails_the_call_goes_to_the_fallback_number(
    voice: Voice, fault: str
) -> None:
    tenant = await make_tenant(voice)
    voice.vapi.add_fault(fault)

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    assert verbs(twiml) == ["Say", "Dial"]
    dial = twiml.find("Dial")
    assert dial is not None and dial.text == FALLBACK
    [row] = await logged(voice, params["CallSid"])
    assert (row["tenant_id"], row["outcome"]) == (tenant.id, "fallback_dial")
    assert row["vapi_call_id"] is None


async def test_an_unexpected_bridge_failure_still_answers_the_fallback(
    voice: Voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(voice)

    async def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("a bug in the bridge")

    monkeypatch.setattr(VapiClient, "create_bypass_call", broken)
    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    assert verbs(twiml) == ["Say", "Dial"]
    [row] = await logged(voice, params["CallSid"])
    assert row["outcome"] == "fallback_dial"


async def test_an_unreachable_vapi_sends_the_call_to_the_fallback_number(
    tmp_path: Path, vapi: tuple[VapiSandbox, str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with _stack(tmp_path, closed) as stack:
        async with stack.client() as http:
            v = Voice(stack, vapi[0], http)
            tenant = await make_tenant(v)

            twiml, params = await call(v, forwarded_from=tenant.forwarding)

            assert verbs(twiml) == ["Say", "Dial"]
            [row] = await logged(v, params["CallSid"])
            assert row["outcome"] == "fallback_dial"
            assert json.loads(row["metadata"])["bridge_error"]["kind"] == "transient"


async def test_without_a_fallback_number_the_caller_hears_an_apology(voice: Voice) -> None:
    tenant = await make_tenant(voice, fallback=None)
    voice.vapi.add_fault("500")

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    assert_polite_hangup(twiml)
    [row] = await logged(voice, params["CallSid"])
    assert row["outcome"] == "fallback_apology"


async def test_a_rejected_vapi_key_shows_on_the_phone_channel(voice: Voice) -> None:
    tenant = await make_tenant(voice)
    voice.vapi.add_fault("401")

    twiml, _ = await call(voice, forwarded_from=tenant.forwarding)

    assert verbs(twiml) == ["Say", "Dial"]
    config = await voice.http.get("/api/channels/phone/config", headers=tenant.key)
    assert "Vapi rejected the API key" in config.json()["last_error"]

    twiml, _ = await call(voice, forwarded_from=tenant.forwarding)

    assert verbs(twiml) == ["Connect"]
    config = await voice.http.get("/api/channels/phone/config", headers=tenant.key)
    assert config.json()["last_error"] is None


async def test_a_retried_call_sid_is_logged_once_and_bridged_once(voice: Voice) -> None:
    tenant = await make_tenant(voice)
    params = voice_call_params(CALLER, SHARED_NUMBER, ACCOUNT_SID, tenant.forwarding)

    first, _ = await call(voice, params=params)
    again, _ = await call(voice, params=params)

    assert ET.tostring(first) == ET.tostring(again)
    assert len(voice.vapi.calls) == 1
    [row] = await logged(voice, params["CallSid"])
    assert row["outcome"] == "bridged" and row["vapi_call_id"] == voice.vapi.calls[0]["id"]


@pytest.mark.parametrize("signature", ["forged", "missing", "other_url"])
async def test_an_unsigned_or_forged_webhook_is_refused_and_writes_nothing(
    voice: Voice, signature: str
) -> None:
    tenant = await make_tenant(voice)
    params = voice_call_params(CALLER, SHARED_NUMBER, ACCOUNT_SID, tenant.forwarding)
    url = f"{voice.stack.url}/webhooks/twilio/voice"
    if signature == "forged":
        response = await post_signed_form(voice.http, url, params, "not-the-auth-token")
    elif signature == "other_url":
        response = await post_signed_form(
            voice.http, url, params, AUTH_TOKEN, signing_url="https://elsewhere.test/voice"
        )
    else:
        response = await voice.http.post(url, data=params)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await logged(voice, params["CallSid"]) == []
    assert voice.vapi.calls == []


async def test_lookups_for_vapi_server_messages(voice: Voice) -> None:
    tenant = await make_tenant(voice)
    await call(voice, forwarded_from=tenant.forwarding)
    service = voice.stack.app.state.gateway.voice

    assert await service.tenant_for_vapi_call(voice.vapi.calls[0]["id"]) == tenant.id
    assert await service.tenant_for_vapi_call("unknown-call") is None
    assert await service.tenant_for_called_number(tenant.dedicated) == (tenant.id, ASSISTANT_ID)
    # a forwarding number is the tenant's own line, never one calls arrive at
    assert await service.tenant_for_called_number(tenant.forwarding) is None
    assert await service.tenant_for_called_number("+33612999998") is None
    # the tenants of this module share one assistant: it names no single tenant
    assert await service.tenant_for_assistant(ASSISTANT_ID) is None
    assert await service.tenant_for_assistant("asst-nobody-uses") is None
    own = await make_tenant(voice, assistant="asst-of-one-tenant")
    assert await service.tenant_for_assistant("asst-of-one-tenant") == own.id
