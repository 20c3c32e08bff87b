"""The two ways a call reaches a tenant's Vapi assistant, pinned on the wire (issue 10, item
4): bypass (`POST /call`, Vapi's TwiML back to Twilio) and SIP (a Vapi SIP number per tenant,
`<Dial><Sip>` with the tenant and caller as `X-` headers, the tenant resolved again in
Vapi's `assistant-request`, never from a header alone)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from gateway.providers.vapi.client import VapiClient
from gateway.providers.vapi.messages import Call, sip_headers
from gateway.sandbox.server import ServerThread
from gateway.sandbox.vapi_api import VapiSandbox, VapiServerMessenger, vapi_call
from tests.stack import Stack
from tests.test_voice import (
    ASSISTANT_ID,
    CALLER,
    FALLBACK,
    PHONE_NUMBER_ID,
    VAPI_KEY,
    Tenant,
    Voice,
    _stack,
    assert_polite_hangup,
    call,
    logged,
    make_tenant,
    verbs,
)

SECRET = "vapi-server-secret-sip-0001"
AUTH = {"Authorization": f"Bearer {VAPI_KEY}"}
SIP_URI = re.compile(r"sip:[0-9a-f]{32}@sip\.vapi\.ai")


@pytest.fixture(scope="module")
def vapi() -> Iterator[tuple[VapiSandbox, str]]:
    sandbox = VapiSandbox(VAPI_KEY)
    with ServerThread(sandbox.app) as server:
        yield sandbox, server.base_url


@pytest.fixture(scope="module")
def sip_stack(
    tmp_path_factory: pytest.TempPathFactory, vapi: tuple[VapiSandbox, str]
) -> Iterator[Stack]:
    with _stack(tmp_path_factory.mktemp("sip"), vapi[1], VAPI_WEBHOOK_SECRET=SECRET) as stack:
        yield stack


@pytest.fixture
async def voice(sip_stack: Stack, vapi: tuple[VapiSandbox, str]) -> Any:
    vapi[0].reset()
    async with sip_stack.client() as http:
        yield Voice(sip_stack, vapi[0], http)


def messenger(v: Voice) -> VapiServerMessenger:
    return VapiServerMessenger(f"{v.stack.url}/api/vapi/functions", SECRET, v.http)


async def operator(v: Voice, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = await v.http.put(
        f"/admin/tenants/{tenant.id}/channels/phone/config", json=fields, headers=v.stack.admin
    )
    assert response.status_code == 200, response.text
    settings: dict[str, Any] = response.json()["operator_settings"]
    return settings


async def provision(v: Voice, tenant: Tenant) -> dict[str, Any]:
    response = await v.http.post(f"/admin/tenants/{tenant.id}/assistant", headers=v.stack.admin)
    assert response.status_code == 200, response.text
    settings: dict[str, Any] = response.json()["operator_settings"]
    return settings


async def sip_tenant(v: Voice, *, fallback: str | None = FALLBACK) -> tuple[Tenant, dict[str, Any]]:
    """A tenant in SIP mode, provisioned (assistant and SIP number), phone channel on."""
    tenant = await make_tenant(v, assistant=None, enable=False, fallback=fallback)
    await operator(v, tenant, vapi_mode="sip")
    settings = await provision(v, tenant)
    on = await v.http.post("/api/channels/phone/toggle", json={"enabled": True}, headers=tenant.key)
    assert on.status_code == 200, on.text
    return tenant, settings


def dialled(twiml: ET.Element) -> tuple[str, dict[str, str]]:
    """The SIP URI of a `<Dial><Sip>` answer and the X- headers Twilio will send, decoded."""
    assert verbs(twiml) == ["Dial"], ET.tostring(twiml)
    dial = twiml.find("Dial")
    assert dial is not None and [child.tag for child in dial] == ["Sip"]
    assert dial.get("answerOnBridge") == "true"
    sip = dial.find("Sip")
    assert sip is not None and sip.text
    uri, _, query = sip.text.partition("?")
    headers = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        headers[name] = unquote(value)
    return uri, headers


def sip_text(twiml: ET.Element) -> str:
    sip = twiml.find("./Dial/Sip")
    assert sip is not None and sip.text
    return sip.text


# -- bypass: the wire as it was -----------------------------------------------------------------


async def test_bypass_posts_the_documented_call_and_relays_vapis_twiml(voice: Voice) -> None:
    tenant = await make_tenant(voice)

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    [(method, path, body)] = voice.vapi.requests
    assert (method, path) == ("POST", "/call")
    metadata = body["metadata"]
    assert body == {
        "phoneNumberId": PHONE_NUMBER_ID,
        "phoneCallProviderBypassEnabled": True,
        "customer": {"number": CALLER},
        "assistantId": ASSISTANT_ID,
        "assistantOverrides": {"metadata": metadata},
        "metadata": metadata,
    }
    [row] = await logged(voice, params["CallSid"])
    assert metadata == {
        "tenant_id": tenant.id,
        "call_sid": params["CallSid"],
        "call_log_id": row["id"],
    }
    [vapi_call_object] = voice.vapi.calls
    twiml_from_vapi = vapi_call_object["phoneCallProviderDetails"]["twiml"]
    assert ET.tostring(twiml) == ET.tostring(ET.fromstring(twiml_from_vapi))
    assert (row["outcome"], row["vapi_call_id"]) == ("bridged", vapi_call_object["id"])
    assert json.loads(row["metadata"]) == {"vapi_mode": "bypass"}


# -- SIP: provisioning ---------------------------------------------------------------------------


async def test_provisioning_creates_one_sip_number_per_tenant(voice: Voice) -> None:
    tenant, settings = await sip_tenant(voice)

    creates = [b for m, p, b in voice.vapi.requests if (m, p) == ("POST", "/phone-number")]
    [body] = creates
    assert SIP_URI.fullmatch(body["sipUri"]), body["sipUri"]
    assert body == {
        "provider": "vapi",
        "sipUri": body["sipUri"],
        "name": f"Cabinet {tenant.slug.split('-')[1]}",
        "server": {"url": f"{voice.stack.url}/api/vapi/functions", "secret": SECRET},
    }
    assert "assistantId" not in body, "Vapi must ask the gateway which assistant answers"
    [number] = voice.vapi.phone_numbers.values()
    assert settings["vapi_mode"] == "sip"
    assert settings["vapi_sip_uri"] == body["sipUri"]
    assert settings["vapi_sip_phone_number_id"] == number["id"]
    assert settings["vapi_assistant_id"] in voice.vapi.assistants

    _, other_settings = await sip_tenant(voice)
    assert other_settings["vapi_sip_uri"] != settings["vapi_sip_uri"]

    again = await provision(voice, tenant)
    assert again["vapi_sip_uri"] == settings["vapi_sip_uri"]
    assert len(voice.vapi.phone_numbers) == 2, "a second sync updates the number"
    assert voice.vapi.requests[-1][:2] == ("PATCH", f"/phone-number/{number['id']}")


async def test_a_sip_number_vapi_lost_is_made_again(voice: Voice) -> None:
    tenant, settings = await sip_tenant(voice)
    voice.vapi.phone_numbers.clear()

    again = await provision(voice, tenant)

    assert again["vapi_sip_uri"] != settings["vapi_sip_uri"]
    [number] = voice.vapi.phone_numbers.values()
    assert (number["id"], number["sipUri"]) == (
        again["vapi_sip_phone_number_id"],
        again["vapi_sip_uri"],
    )


async def test_a_bypass_tenant_gets_no_sip_number(voice: Voice) -> None:
    tenant = await make_tenant(voice, assistant=None, enable=False)

    settings = await provision(voice, tenant)

    assert settings["vapi_mode"] == "bypass" and settings["vapi_sip_uri"] is None
    assert voice.vapi.phone_numbers == {}


async def test_an_assistant_without_an_id_is_refused_not_stored(
    voice: Voice, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(voice, assistant=None, enable=False)

    async def nameless(self: VapiClient, body: Any) -> dict[str, Any]:
        return {"name": body["name"]}

    monkeypatch.setattr(VapiClient, "create_assistant", nameless)
    response = await voice.http.post(
        f"/admin/tenants/{tenant.id}/assistant", headers=voice.stack.admin
    )

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "vapi_error"
    config = await voice.http.get("/api/channels/phone/config", headers=tenant.key)
    assert config.json()["operator_settings"]["vapi_assistant_id"] is None


# -- SIP: the answer to Twilio ----------------------------------------------------------------


async def test_a_sip_tenants_call_is_dialled_to_its_sip_uri_with_x_headers(voice: Voice) -> None:
    tenant, settings = await sip_tenant(voice)
    voice.vapi.requests.clear()

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    uri, headers = dialled(twiml)
    assert uri == settings["vapi_sip_uri"]
    assert headers == {
        "X-Tenant-Id": tenant.id,
        "X-Caller": CALLER,
        "X-Call-Sid": params["CallSid"],
    }
    assert voice.vapi.requests == [], "SIP mode makes no request to Vapi while Twilio waits"
    [row] = await logged(voice, params["CallSid"])
    assert (row["tenant_id"], row["outcome"]) == (tenant.id, "bridged")
    assert json.loads(row["metadata"]) == {"vapi_mode": "sip"}

    again, _ = await call(voice, params=params)
    assert sip_text(again) == sip_text(twiml), "a retried CallSid gets the same answer"


@pytest.mark.parametrize("fallback", [FALLBACK, None])
async def test_a_sip_tenant_without_its_uri_gets_the_bypass_fallback(
    voice: Voice, fallback: str | None
) -> None:
    # the API refuses to leave an enabled channel without its SIP address; settings stored
    # by hand (or by an older version) still can be
    tenant = await make_tenant(voice, fallback=fallback)
    await voice.stack.app.state.gateway.db.execute_write(
        "UPDATE channel_configurations SET settings = json_set(settings, '$.vapi_mode', 'sip') "
        "WHERE tenant_id = ? AND channel_type = 'phone'",
        (tenant.id,),
    )

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    if fallback:
        assert verbs(twiml) == ["Say", "Dial"]
        dial = twiml.find("Dial")
        assert dial is not None and dial.text == FALLBACK
    else:
        assert_polite_hangup(twiml)
    [row] = await logged(voice, params["CallSid"])
    assert row["outcome"] == ("fallback_dial" if fallback else "fallback_apology")
    error = json.loads(row["metadata"])["bridge_error"]
    assert error["kind"] == "configuration" and "vapi_sip_uri" in error["reason"]
    config = await voice.http.get("/api/channels/phone/config", headers=tenant.key)
    assert "vapi_sip_uri" in config.json()["last_error"]
    assert voice.vapi.calls == []


async def test_a_sip_channel_is_never_on_without_its_uri(voice: Voice) -> None:
    tenant = await make_tenant(voice, enable=False)
    await operator(voice, tenant, vapi_mode="sip")

    enabled = await voice.http.post(
        "/api/channels/phone/toggle", json={"enabled": True}, headers=tenant.key
    )
    on = await make_tenant(voice)
    switched = await voice.http.put(
        f"/admin/tenants/{on.id}/channels/phone/config",
        json={"vapi_mode": "sip"},
        headers=voice.stack.admin,
    )

    for refused in (enabled, switched):
        assert refused.status_code == 409
        assert refused.json()["error"]["details"]["missing"] == ["vapi_sip_uri"]


# -- SIP: Vapi's assistant-request ------------------------------------------------------------


async def test_the_assistant_request_of_a_sip_call_answers_the_tenants_assistant(
    voice: Voice,
) -> None:
    tenant, settings = await sip_tenant(voice)
    twiml, params = await call(voice, forwarded_from=tenant.forwarding)
    invited = voice.vapi.sip_invite(sip_text(twiml), CALLER)
    assert invited is not None
    sip_call, number = invited

    answer = await messenger(voice).assistant_request(sip_call, number)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "assistantId": settings["vapi_assistant_id"],
        "assistantOverrides": {"metadata": {"tenant_id": tenant.id}},
    }
    [row] = await logged(voice, params["CallSid"])
    assert row["vapi_call_id"] == sip_call["id"], "the SIP call is linked to the logged call"
    # the assistant's tool calls on that call act for the tenant, for the caller
    known = vapi_call(settings["vapi_assistant_id"], "", call_id=sip_call["id"])
    del known["customer"]
    ticket = await messenger(voice).tool_calls(known, [("create_ticket", {"subject": "SIP"})])
    assert ticket.status_code == 200 and "result" in ticket.json()["results"][0]
    tickets = await voice.http.get("/api/tickets", headers=tenant.key)
    [saved] = tickets.json()["tickets"]
    assert (saved["subject"], saved["contact_phone"]) == ("SIP", CALLER)


@pytest.mark.parametrize("where", ["transport", "variables"])
async def test_the_sip_headers_are_read_wherever_vapi_puts_them(voice: Voice, where: str) -> None:
    tenant, settings = await sip_tenant(voice)
    twiml, _ = await call(voice, forwarded_from=tenant.forwarding)
    invited = voice.vapi.sip_invite(sip_text(twiml), CALLER)
    assert invited is not None
    sip_call, number = invited
    del sip_call["phoneCallProviderDetails"]
    if where == "variables":
        del sip_call["transport"]

    answer = await messenger(voice).assistant_request(sip_call, number)

    assert answer.json()["assistantId"] == settings["vapi_assistant_id"]


@pytest.mark.parametrize("claim", ["other_tenant", "unknown_tenant"])
async def test_a_forged_tenant_header_is_refused(voice: Voice, claim: str) -> None:
    victim, _ = await sip_tenant(voice)
    attacker, _ = await sip_tenant(voice)
    twiml, _ = await call(voice, forwarded_from=attacker.forwarding)
    # someone who knows the attacker's SIP address dials it claiming to be the victim
    claimed = victim.id if claim == "other_tenant" else "ten_nobody"
    forged = sip_text(twiml).replace(attacker.id, claimed)
    invited = voice.vapi.sip_invite(forged, CALLER)
    assert invited is not None
    sip_call, number = invited

    answer = await messenger(voice).assistant_request(sip_call, number)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "unknown_call"


async def test_a_tenant_header_on_a_number_of_no_tenant_is_refused(voice: Voice) -> None:
    tenant, _ = await sip_tenant(voice)
    stray = vapi_call("", CALLER, call_id="call-stray", phone_number_id="pn-nobody")
    stray["phoneCallProviderDetails"] = {"sip": {"headers": {"X-Tenant-Id": tenant.id}}}

    answer = await messenger(voice).assistant_request(stray)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "unknown_call"


async def test_a_sip_tenant_whose_channel_is_off_is_not_in_service(voice: Voice) -> None:
    tenant, _ = await sip_tenant(voice)
    twiml, _ = await call(voice, forwarded_from=tenant.forwarding)
    off = await voice.http.post(
        "/api/channels/phone/toggle", json={"enabled": False}, headers=tenant.key
    )
    assert off.status_code == 200
    invited = voice.vapi.sip_invite(sip_text(twiml), CALLER)
    assert invited is not None

    answer = await messenger(voice).assistant_request(*invited)

    assert answer.status_code == 200
    assert "error" in answer.json() and "assistantId" not in answer.json()


def test_sip_headers_names_are_read_without_regard_to_case() -> None:
    call_object = Call.model_validate(
        {
            "phoneCallProviderDetails": {"sip": {"headers": {"x-TENANT-id": "ten_1", "to": "x"}}},
            "assistantOverrides": {"variableValues": {"caller": "+33601020304", "n": 3}},
        }
    )

    assert sip_headers(call_object) == {
        "x-tenant-id": "ten_1",
        "to": "x",
        "x-caller": "+33601020304",
    }


# -- the emulator validates SIP numbers like Vapi ------------------------------------------------


@pytest.fixture
async def api(vapi: tuple[VapiSandbox, str]) -> Any:
    vapi[0].reset()
    async with httpx.AsyncClient(base_url=vapi[1], headers=AUTH, timeout=5) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"sipUri": "sip:a@sip.vapi.ai"}, "provider must be one of the following values"),
        ({"provider": "vapi", "sipUri": "sip:a@elsewhere.test"}, "sipUri must be in the format"),
        ({"provider": "vapi", "sipUri": "a@sip.vapi.ai"}, "sipUri must be in the format"),
        ({"provider": "vapi", "number": "+33612345678"}, "property number should not exist"),
        ({"provider": "vapi", "name": "x" * 41}, "name must be shorter than or equal to 40"),
        ({"provider": "vapi", "server": {"url": "not a url"}}, "server.url must be a URL"),
        (
            {"provider": "vapi", "authentication": {"username": "u", "password": "p" * 20}},
            "authentication.username must be 20 to 40 characters",
        ),
    ],
)
async def test_the_emulator_refuses_invalid_sip_numbers(
    api: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await api.post("/phone-number", json=body)

    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request"
    assert any(message in m for m in response.json()["message"]), response.json()


async def test_the_emulator_keeps_sip_uris_unique_without_regard_to_case(
    api: httpx.AsyncClient,
) -> None:
    first = await api.post(
        "/phone-number", json={"provider": "vapi", "sipUri": "sip:Ab@sip.vapi.ai"}
    )
    again = await api.post(
        "/phone-number", json={"provider": "vapi", "sipUri": "sip:aB@sip.vapi.ai"}
    )
    fetched = await api.get(f"/phone-number/{first.json()['id']}")
    missing = await api.patch("/phone-number/pn-none", json={"name": "x"})
    provider = await api.patch(f"/phone-number/{first.json()['id']}", json={"provider": "vapi"})

    assert first.status_code == 201
    assert first.json()["provider"] == "vapi" and first.json()["status"] == "active"
    assert again.status_code == 400
    assert fetched.json() == first.json()
    assert missing.status_code == 404
    assert provider.status_code == 400
    assert "property provider should not exist" in provider.json()["message"]


def test_an_invite_to_an_unknown_sip_uri_reaches_nothing(vapi: tuple[VapiSandbox, str]) -> None:
    assert vapi[0].sip_invite("sip:nobody@sip.vapi.ai?X-Tenant-Id=t", CALLER) is None


async def test_a_sip_tenant_survives_the_mode_going_back_to_bypass(voice: Voice) -> None:
    tenant, _ = await sip_tenant(voice)
    number = await voice.http.put(
        f"/admin/tenants/{tenant.id}/channels/phone/config",
        json={"vapi_mode": "bypass", "vapi_phone_number_id": PHONE_NUMBER_ID},
        headers=voice.stack.admin,
    )
    assert number.status_code == 200

    twiml, _ = await call(voice, forwarded_from=tenant.forwarding)

    assert verbs(twiml) == ["Connect"]
    assert [m for m, path, _ in voice.vapi.requests if path == "/call"] == ["POST"]


async def test_a_sip_address_twilio_cannot_dial_gets_the_fallback(voice: Voice) -> None:
    tenant, _ = await sip_tenant(voice)
    long_host = ".".join(["sip"] + ["x" * 60] * 2) + ".test"
    await operator(voice, tenant, vapi_sip_uri=f"sip:{'u' * 60}@{long_host}")

    twiml, params = await call(voice, forwarded_from=tenant.forwarding)

    assert verbs(twiml) == ["Say", "Dial"]
    [row] = await logged(voice, params["CallSid"])
    assert row["outcome"] == "fallback_dial"
    config = await voice.http.get("/api/channels/phone/config", headers=tenant.key)
    assert "255" in config.json()["last_error"]
