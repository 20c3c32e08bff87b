"""Vapi's server messages, as an attacker or a buggy assistant would send them: fields of the
wrong type are a 422 naming them (never a 500), one malformed tool call is one error result,
and cancel/reschedule act only on the caller's own appointments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.config import Settings
from gateway.sandbox.vapi_api import VapiServerMessenger, vapi_call
from gateway.store import calls as call_store
from tests.conftest import Api, start_api
from tests.test_http_errors import assert_error_shape

SECRET = "vapi-secret-messages-0001"
URL = "https://gateway.test/api/vapi/functions"
NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
CALLER = "+33601020304"
OTHER = "+33611111111"
NINE, TEN, ELEVEN = (f"2026-12-01T{h}:00:00+01:00" for h in ("09", "10", "11"))
ALL_DAY = {d: [{"open": "08:00", "close": "20:00"}] for d in ("mon", "tue", "wed", "thu", "fri")}


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    app, client = await start_api(make_settings(VAPI_WEBHOOK_SECRET=SECRET))
    try:
        yield Api(app, client)
    finally:
        await client.aclose()
        await app.state.gateway.stop()


async def cabinet(api: Api) -> tuple[str, dict[str, str]]:
    tenant, key = await api.create_tenant("cabinet")
    rules = {"opening_hours": ALL_DAY, "min_notice_minutes": 0}
    response = await api.client.put(
        "/api/channels/phone/config", json={"booking": rules}, headers=key
    )
    assert response.status_code == 200, response.text
    api.gateway.booking.clock = lambda: NOW
    return tenant["id"], key


async def book(api: Api, key: dict[str, str], phone: str, starts_at: str) -> str:
    response = await api.client.post(
        "/api/appointments",
        json={"customer_name": "Client", "customer_phone": phone, "starts_at": starts_at},
        headers=key,
    )
    assert response.status_code == 201, response.text
    appointment_id: str = response.json()["id"]
    return appointment_id


async def appointment(api: Api, key: dict[str, str], appointment_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/api/appointments/{appointment_id}", headers=key)
    found: dict[str, Any] = response.json()
    return found


def vapi(api: Api) -> VapiServerMessenger:
    return VapiServerMessenger(URL, SECRET, api.client)


async def tool(
    api: Api, call: dict[str, Any], name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    response = await vapi(api).tool_calls(call, [(name, arguments)])
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["name"] == name
    found: dict[str, Any] = result
    return found


def caller_call(tenant_id: str, number: str | None = CALLER, **extra: Any) -> dict[str, Any]:
    call = vapi_call("asst-cabinet", number or "", metadata={"tenant_id": tenant_id}, **extra)
    if number is None:
        del call["customer"]
    return call


# -- the envelope -------------------------------------------------------------------------------


def _message(tenant_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    call = caller_call(tenant_id)
    return {"type": kind, "call": call, **fields}


WRONG_TYPES: list[tuple[str, dict[str, Any], str]] = [
    ("tool-calls", {"toolCallList": "abc"}, "message.toolCallList"),
    ("tool-calls", {"toolCallList": {"id": "x"}}, "message.toolCallList"),
    ("tool-calls", {"call": "abc"}, "message.call"),
    ("tool-calls", {"call": {"id": 5}}, "message.call.id"),
    ("tool-calls", {"call": {"customer": "abc"}}, "message.call.customer"),
    ("tool-calls", {"call": {"customer": {"number": 33601020304}}}, "message.call.customer.number"),
    ("tool-calls", {"call": {"metadata": ["tenant"]}}, "message.call.metadata"),
    ("end-of-call-report", {"cost": "abc"}, "message.cost"),
    ("end-of-call-report", {"cost": 1e300}, "message.cost"),
    ("end-of-call-report", {"artifact": 5}, "message.artifact"),
    ("end-of-call-report", {"artifact": {"transcript": ["a"]}}, "message.artifact.transcript"),
    ("end-of-call-report", {"analysis": []}, "message.analysis"),
    ("end-of-call-report", {"startedAt": 7}, "message.startedAt"),
    ("end-of-call-report", {"endedAt": "yesterday"}, "message.endedAt"),
    ("end-of-call-report", {"endedAt": "9999-12-31T23:59:59-14:00"}, "message.endedAt"),
    ("end-of-call-report", {"startedAt": "0001-01-01T00:00:00+14:00"}, "message.startedAt"),
    ("end-of-call-report", {"durationSeconds": -1}, "message.durationSeconds"),
    ("status-update", {"status": 3}, "message.status"),
    ("assistant-request", {"phoneNumber": "x"}, "message.phoneNumber"),
    ("assistant-request", {"phoneNumber": {"number": ["+33"]}}, "message.phoneNumber.number"),
    (5, {}, "message.type"),  # type: ignore[list-item]
]


@pytest.mark.refused_before_the_store
@pytest.mark.parametrize(("kind", "fields", "field"), WRONG_TYPES)
async def test_a_field_of_the_wrong_type_is_422_naming_it(
    api: Api, kind: str, fields: dict[str, Any], field: str
) -> None:
    tenant_id, _ = await cabinet(api)
    response = await vapi(api).send(_message(tenant_id, kind, **fields))
    assert_error_shape(response, 422, "validation_failed")
    assert [f["field"] for f in response.json()["error"]["details"]["fields"]] == [field]
    calls = await api.gateway.db.fetchone("SELECT COUNT(*) AS n FROM call_logs")
    assert calls["n"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [({"message": "x"}, "message"), ({"message": None}, "message"), ({}, "message"), ([1], "body")],
)
async def test_an_envelope_that_is_not_one_is_422(api: Api, body: Any, field: str) -> None:
    response = await api.client.post(URL, json=body, headers={"x-vapi-secret": SECRET})
    assert_error_shape(response, 422, "validation_failed")
    assert [f["field"] for f in response.json()["error"]["details"]["fields"]] == [field]


async def test_an_envelope_is_checked_after_the_secret(api: Api) -> None:
    response = await api.client.post(URL, json={"message": "x"})
    assert_error_shape(response, 403, "invalid_signature")


async def test_fields_vapi_adds_are_kept_out_of_the_way(api: Api) -> None:
    tenant_id, _ = await cabinet(api)
    call = {**caller_call(tenant_id), "id": "call-report", "futureField": {"a": [1]}}
    message = _message(
        tenant_id,
        "end-of-call-report",
        call=call,
        startedAt="2026-11-20T08:00:00.000Z",
        endedAt="2026-11-20T08:01:35.000Z",
        cost=0.1,
        artifact={"transcript": "AI: Bonjour", "messages": [{"role": "bot"}]},
        somethingNew=True,
    )
    response = await vapi(api).send(message)
    assert response.status_code == 200, response.text
    row = await api.gateway.db.fetchone(
        "SELECT duration_seconds, billed_minutes, transcript FROM call_logs"
    )
    assert (row["duration_seconds"], row["billed_minutes"]) == (95, 2)
    assert row["transcript"] == "AI: Bonjour"


async def test_one_malformed_tool_call_is_one_error_result(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    good = {
        "id": "call_good",
        "type": "function",
        "function": {"name": "create_ticket", "arguments": {"subject": "Leak"}},
    }
    message = _message(
        tenant_id,
        "tool-calls",
        toolCallList=[
            1,
            {"id": "call_nofunction", "type": "function"},
            {"id": "call_badname", "function": {"name": ["x"]}},
            {"id": "call_args", "function": {"name": "create_ticket", "arguments": 5}},
            good,
        ],
    )
    response = await vapi(api).send(message)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("toolCallId") for r in results] == [
        None,
        "call_nofunction",
        "call_badname",
        "call_args",
        "call_good",
    ]
    assert all("error" in r and r["error"] for r in results[:4])
    assert "result" in results[4] and "error" not in results[4]
    tickets = (await api.client.get("/api/tickets", headers=key)).json()["tickets"]
    assert [t["subject"] for t in tickets] == ["Leak"]


@pytest.mark.parametrize(
    ("name", "arguments", "argument"),
    [
        ("check_availability", {"date": "0001-01-01"}, "date"),
        ("check_availability", {"start_date": "2026-12-01", "end_date": "9999-12-31"}, "end_date"),
        ("book_appointment", {"name": "Ana", "start": "9999-12-31T23:59:59-14:00"}, "start"),
        ("book_appointment", {"name": "Ana", "start": "0001-01-01T00:00:00+14:00"}, "start"),
        ("cancel_appointment", {"start": "0001-01-01T00:00:00+14:00"}, "start"),
        ("reschedule_appointment", {"new_start": "9999-12-31T23:59:59-14:00"}, "new_start"),
        ("create_ticket", {"subject": "Leak", "description": "a\x00b"}, "description"),
        ("create_ticket", {"subject": "Leak\r\nBcc: x"}, "subject"),
    ],
)
async def test_tool_arguments_out_of_range_are_an_error_result(
    api: Api, name: str, arguments: dict[str, Any], argument: str
) -> None:
    tenant_id, _ = await cabinet(api)
    result = await tool(api, caller_call(tenant_id), name, arguments)
    assert "result" not in result
    assert result["error"].startswith(f"invalid arguments: {argument} ")
    assert await api.gateway.db.fetchone("SELECT id FROM rendez_vous") is None


async def test_blank_optional_tool_arguments_are_not_given(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    result = await tool(
        api,
        caller_call(tenant_id),
        "book_appointment",
        {"name": "Ana", "start": NINE, "phone": "", "email": "", "notes": "", "service": ""},
    )
    assert json.loads(result["result"])["status"] == "booked", result
    [booked] = (await api.client.get("/api/appointments", headers=key)).json()["appointments"]
    assert booked["customer_phone"] == CALLER and booked["customer_email"] is None


async def test_a_tool_phone_argument_is_read_in_the_tenants_country(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    result = await tool(
        api,
        caller_call(tenant_id),
        "book_appointment",
        {"name": "Ana", "start": NINE, "phone": "06 11 11 11 11"},
    )
    assert json.loads(result["result"])["status"] == "booked", result
    [booked] = (await api.client.get("/api/appointments", headers=key)).json()["appointments"]
    assert booked["customer_phone"] == OTHER


# -- cancel and reschedule: the caller's own appointments only ---------------------------------

NOT_YOURS = "no upcoming appointment with that reference was found for the number you are calling"


@pytest.mark.parametrize("name", ["cancel_appointment", "reschedule_appointment"])
async def test_a_caller_cannot_change_someone_elses_appointment(api: Api, name: str) -> None:
    tenant_id, key = await cabinet(api)
    theirs = await book(api, key, OTHER, NINE)
    arguments: dict[str, Any] = {"appointment_id": theirs}
    if name == "reschedule_appointment":
        arguments["new_start"] = ELEVEN
    refused = await tool(api, caller_call(tenant_id), name, arguments)
    unknown = await tool(api, caller_call(tenant_id), name, {**arguments, "appointment_id": "x"})
    assert NOT_YOURS in refused["error"] and "result" not in refused
    assert refused["error"] == unknown["error"], "an id reveals nothing"
    untouched = await appointment(api, key, theirs)
    assert (untouched["status"], untouched["starts_at"]) == ("booked", NINE)


async def test_a_caller_cancels_their_own_appointment_by_id(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    mine = await book(api, key, CALLER, TEN)
    result = await tool(api, caller_call(tenant_id), "cancel_appointment", {"appointment_id": mine})
    assert "cancelled" in result["result"]
    assert (await appointment(api, key, mine))["status"] == "cancelled"


async def test_without_an_id_the_callers_next_appointment_is_the_one(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    theirs = await book(api, key, OTHER, NINE)
    mine = await book(api, key, CALLER, TEN)
    result = await tool(
        api, caller_call(tenant_id), "reschedule_appointment", {"new_start": ELEVEN}
    )
    assert json.loads(result["result"])["status"] == "rescheduled", result
    assert (await appointment(api, key, mine))["starts_at"] == ELEVEN
    assert (await appointment(api, key, theirs))["starts_at"] == NINE


async def test_another_phone_argument_is_refused(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    theirs = await book(api, key, OTHER, NINE)
    result = await tool(api, caller_call(tenant_id), "cancel_appointment", {"phone": OTHER})
    assert "number you are calling from" in result["error"]
    assert (await appointment(api, key, theirs))["status"] == "booked"


async def test_without_a_known_caller_number_the_tools_refuse(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    theirs = await book(api, key, OTHER, NINE)
    web_call = caller_call(tenant_id, number=None)
    for name, arguments in (
        ("cancel_appointment", {"appointment_id": theirs}),
        ("cancel_appointment", {"phone": OTHER}),
        ("reschedule_appointment", {"appointment_id": theirs, "new_start": ELEVEN}),
    ):
        result = await tool(api, web_call, name, arguments)
        assert "number of this call is unknown" in result["error"], result
    assert (await appointment(api, key, theirs))["status"] == "booked"


async def test_the_number_the_bridge_recorded_identifies_the_caller(api: Api) -> None:
    tenant_id, key = await cabinet(api)
    mine = await book(api, key, CALLER, TEN)
    theirs = await book(api, key, OTHER, NINE)

    def record(conn: Any) -> None:
        call_store.insert_call(
            conn,
            {
                "tenant_id": tenant_id,
                "call_sid": "CA" + "0" * 32,
                "vapi_call_id": "vapi-call-recorded",
                "from_number": CALLER,
            },
        )

    await api.gateway.db.write_fn(record)
    recorded = caller_call(tenant_id, number=None, call_id="vapi-call-recorded")
    refused = await tool(api, recorded, "cancel_appointment", {"appointment_id": theirs})
    assert NOT_YOURS in refused["error"]
    done = await tool(api, recorded, "cancel_appointment", {"appointment_id": mine})
    assert "cancelled" in done["result"]
    assert (await appointment(api, key, mine))["status"] == "cancelled"
    assert (await appointment(api, key, theirs))["status"] == "booked"


async def test_the_rest_api_keeps_full_access(api: Api) -> None:
    _, key = await cabinet(api)
    theirs = await book(api, key, OTHER, NINE)
    response = await api.client.patch(
        f"/api/appointments/{theirs}", json={"status": "cancelled"}, headers=key
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("book_appointment", {"name": "Léa Martin", "start": ELEVEN}),
        ("cancel_appointment", {}),
        ("reschedule_appointment", {"new_start": ELEVEN}),
        ("qualify_prospect", {"name": "Léa Martin", "phone": CALLER}),
        ("create_ticket", {"subject": "Fuite", "description": "Sous l'évier"}),
    ],
)
async def test_a_tenant_suspended_during_a_call_writes_nothing(
    api: Api, name: str, arguments: dict[str, Any]
) -> None:
    tenant_id, key = await cabinet(api)
    mine = await book(api, key, CALLER, TEN)
    suspended = await api.client.patch(
        f"/admin/tenants/{tenant_id}", json={"status": "suspended"}, headers=api.admin
    )
    assert suspended.status_code == 200, suspended.text
    result = await tool(api, caller_call(tenant_id), name, arguments)
    assert "cannot take bookings or requests" in result["error"], result
    assert (await appointment(api, key, mine))["status"] == "booked"
    assert (await appointment(api, key, mine))["starts_at"] == TEN
    listed = {
        name: (await api.client.get(f"/api/{name}", headers=key)).json()[name]
        for name in ("appointments", "prospects", "tickets")
    }
    assert [a["id"] for a in listed["appointments"]] == [mine]
    assert listed["prospects"] == [] and listed["tickets"] == []
    # reading the diary is still answered, and resuming gives the assistant its tools back
    free = await tool(api, caller_call(tenant_id), "check_availability", {"date": TEN[:10]})
    assert "error" not in free, free
    await api.client.patch(
        f"/admin/tenants/{tenant_id}", json={"status": "active"}, headers=api.admin
    )
    again = await tool(api, caller_call(tenant_id), name, arguments)
    assert "cannot take bookings" not in again.get("error", ""), again
