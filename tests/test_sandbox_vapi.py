from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.server import ServerThread
from gateway.sandbox.vapi_api import (
    INVALID_KEY,
    VapiSandbox,
    VapiServerMessenger,
    vapi_call,
)

API_KEY = "vapi-private-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PHONE_NUMBER_ID = "3c5e3b0a-0f1b-4a57-9a40-0d1f6f1a2b3c"
ASSISTANT_ID = "b33d016a-db85-4e34-801b-5f7a175a077e"


def bridge_body(**extra: Any) -> dict[str, Any]:
    return {
        "phoneNumberId": PHONE_NUMBER_ID,
        "phoneCallProviderBypassEnabled": True,
        "customer": {"number": "+33612345678"},
        "assistantId": ASSISTANT_ID,
        "assistantOverrides": {"metadata": {"tenant_id": "t1"}, "variableValues": {"x": 1}},
        "metadata": {"tenant_id": "t1", "twilio_call_sid": "CA123"},
        **extra,
    }


@dataclass
class Env:
    sandbox: VapiSandbox
    client: httpx.AsyncClient


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    sandbox = VapiSandbox(API_KEY)
    with ServerThread(sandbox.app) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5.0) as client:
            yield Env(sandbox, client)


async def test_bridge_call_returns_twiml_connecting_a_media_stream(env: Env) -> None:
    response = await env.client.post("/call", json=bridge_body(), headers=AUTH)

    assert response.status_code == 201
    call = response.json()
    assert uuid.UUID(call["id"])
    assert call["orgId"] == env.sandbox.org_id
    assert call["type"] == "inboundPhoneCall"
    assert call["status"] == "queued"
    assert call["phoneCallProvider"] == "twilio"
    assert call["phoneCallProviderBypassEnabled"] is True
    assert call["createdAt"].endswith("Z") and call["updatedAt"] == call["createdAt"]
    assert call["assistantId"] == ASSISTANT_ID
    assert call["phoneNumberId"] == PHONE_NUMBER_ID
    assert call["customer"] == {"number": "+33612345678"}
    assert call["metadata"]["tenant_id"] == "t1"
    assert call["assistantOverrides"]["variableValues"] == {"x": 1}
    twiml = call["phoneCallProviderDetails"]["twiml"]
    assert twiml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None
    assert stream.attrib["url"].startswith("wss://")
    assert call["id"] in stream.attrib["url"]
    assert env.sandbox.calls == [call]


async def test_created_call_can_be_fetched(env: Env) -> None:
    created = (await env.client.post("/call", json=bridge_body(), headers=AUTH)).json()

    fetched = await env.client.get(f"/call/{created['id']}", headers=AUTH)
    missing = await env.client.get(f"/call/{uuid.uuid4()}", headers=AUTH)

    assert fetched.json() == created
    assert missing.status_code == 404
    assert missing.json() == {"message": "Call not found", "error": "Not Found", "statusCode": 404}


async def test_transient_assistant_is_accepted(env: Env) -> None:
    body = bridge_body()
    del body["assistantId"]
    body["assistant"] = {"name": "Reception", "model": {"provider": "openai", "model": "gpt-4o"}}

    response = await env.client.post("/call", json=body, headers=AUTH)

    assert response.status_code == 201
    assert response.json()["assistant"]["name"] == "Reception"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}]
)
async def test_wrong_or_missing_key_is_unauthorized(env: Env, headers: dict[str, str]) -> None:
    response = await env.client.post("/call", json=bridge_body(), headers=headers)

    assert response.status_code == 401
    assert response.json() == {"message": INVALID_KEY, "error": "Unauthorized", "statusCode": 401}
    assert env.sandbox.calls == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (bridge_body(tenant="t1"), "property tenant should not exist"),
        (bridge_body(customer={"number": "0612345678"}), "E.164"),
        (bridge_body(metadata="t1"), "metadata must be an object"),
        (bridge_body(phoneCallProviderBypassEnabled="yes"), "must be a boolean value"),
        (bridge_body(assistantId=42), "assistantId must be a string"),
    ],
)
async def test_invalid_call_bodies_answer_a_list_of_messages(
    env: Env, body: dict[str, Any], expected: str
) -> None:
    response = await env.client.post("/call", json=body, headers=AUTH)

    assert response.status_code == 400
    data = response.json()
    assert data["error"] == "Bad Request"
    assert data["statusCode"] == 400
    assert isinstance(data["message"], list)
    assert any(expected in message for message in data["message"])


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("phoneNumberId", "Couldn't Get Phone Number"),
        ("customer", "Couldn't Get Customer"),
        ("assistantId", "Couldn't Get Assistant"),
    ],
)
async def test_missing_call_parts_answer_one_sentence(
    env: Env, missing: str, expected: str
) -> None:
    body = bridge_body()
    del body[missing]

    response = await env.client.post("/call", json=body, headers=AUTH)

    assert response.status_code == 400
    assert response.json()["message"].startswith(expected)


async def test_assistant_create_read_update(env: Env) -> None:
    body = {
        "name": "Salon Reception",
        "model": {
            "provider": "openai",
            "model": "gpt-4o",
            "tools": [{"type": "function", "function": {"name": "book_appointment"}}],
        },
        "server": {"url": "https://gateway.example/api/vapi/functions", "secret": "s1"},
        "metadata": {"tenant_id": "t1"},
    }
    created = await env.client.post("/assistant", json=body, headers=AUTH)

    assert created.status_code == 201
    assistant = created.json()
    assert uuid.UUID(assistant["id"])
    assert assistant["orgId"] == env.sandbox.org_id
    assert assistant["model"]["tools"][0]["function"]["name"] == "book_appointment"
    assert assistant["server"]["url"].endswith("/api/vapi/functions")
    assert assistant["isServerUrlSecretSet"] is True
    assert assistant["createdAt"] == assistant["updatedAt"]

    fetched = await env.client.get(f"/assistant/{assistant['id']}", headers=AUTH)
    assert fetched.json() == assistant

    patch = {"name": "Front Desk", "serverUrl": "https://gateway.example/v2", "id": "forged"}
    updated = await env.client.patch(f"/assistant/{assistant['id']}", json=patch, headers=AUTH)
    assert updated.status_code == 200
    after = updated.json()
    assert after["id"] == assistant["id"]
    assert after["name"] == "Front Desk"
    assert after["serverUrl"] == "https://gateway.example/v2"
    assert after["model"] == body["model"]
    assert env.sandbox.assistants[assistant["id"]]["name"] == "Front Desk"


@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_unknown_assistant_is_not_found(env: Env, method: str) -> None:
    response = await env.client.request(
        method, f"/assistant/{uuid.uuid4()}", json={"name": "x"}, headers=AUTH
    )

    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"


async def test_invalid_assistant_is_rejected(env: Env) -> None:
    response = await env.client.post("/assistant", json={"name": "x" * 41}, headers=AUTH)

    assert response.status_code == 400
    assert response.json()["message"] == ["name must be shorter than or equal to 40 characters"]


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("401", 401), ("400", 400)])
async def test_faults_fail_the_next_requests_only(env: Env, kind: str, status: int) -> None:
    env.sandbox.add_fault(kind, count=2)

    answers = [await env.client.post("/call", json=bridge_body(), headers=AUTH) for _ in "abc"]

    assert [a.status_code for a in answers] == [status, status, 201]
    assert answers[0].json()["statusCode"] == status
    assert len(env.sandbox.calls) == 1


async def test_hang_holds_the_answer_past_the_client_timeout(env: Env) -> None:
    env.sandbox.add_fault("hang")

    with pytest.raises(httpx.ReadTimeout):
        await env.client.post("/call", json=bridge_body(), headers=AUTH, timeout=0.3)

    follow_up = await env.client.post("/call", json=bridge_body(), headers=AUTH)
    assert follow_up.status_code == 201


async def test_hang_answers_after_hang_seconds(env: Env) -> None:
    env.sandbox.hang_seconds = 0.1
    env.sandbox.add_fault("hang")

    response = await env.client.post("/call", json=bridge_body(), headers=AUTH)

    assert response.status_code == 201
    assert "twiml" in response.json()["phoneCallProviderDetails"]


async def test_latency_still_answers(env: Env) -> None:
    env.sandbox.latency = 0.05

    response = await env.client.post("/call", json=bridge_body(), headers=AUTH)

    assert response.status_code == 201


async def test_control_endpoints(env: Env) -> None:
    bad = await env.client.post("/_sandbox/faults", json={"kind": "503"})
    queued = await env.client.post("/_sandbox/faults", json={"kind": "500"})
    failed = await env.client.post("/call", json=bridge_body(), headers=AUTH)
    created = await env.client.post("/call", json=bridge_body(), headers=AUTH)
    listed = await env.client.get("/_sandbox/calls")

    assert bad.status_code == 400
    assert queued.json() == {"pending": ["500"]}
    assert failed.status_code == 500
    assert listed.json() == {"calls": [created.json()]}

    assert (await env.client.post("/_sandbox/reset")).status_code == 200
    assert (await env.client.get("/_sandbox/calls")).json() == {"calls": []}
    assert env.sandbox.calls == []


# -- messenger ---------------------------------------------------------------------------


@dataclass
class Receiver:
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        message = body["message"]
        if message["type"] == "tool-calls":
            results = [
                {"toolCallId": tc["id"], "name": tc["function"]["name"], "result": "ok"}
                for tc in message["toolCallList"]
            ]
            return JSONResponse({"results": results})
        return JSONResponse({})

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/vapi/functions", self.handle, methods=["POST"])])


@pytest.fixture
async def messenger() -> AsyncIterator[tuple[VapiServerMessenger, Receiver]]:
    receiver = Receiver()
    transport = httpx.ASGITransport(app=receiver.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        url = "http://gateway/api/vapi/functions"
        yield VapiServerMessenger(url, "shh", client), receiver


CALL = vapi_call(
    ASSISTANT_ID, "+33612345678", phone_number_id=PHONE_NUMBER_ID, metadata={"tenant_id": "t1"}
)


async def test_tool_calls_envelope(messenger: tuple[VapiServerMessenger, Receiver]) -> None:
    sender, receiver = messenger

    response = await sender.tool_calls(
        CALL,
        [
            ("check_availability", '{"date": "2030-01-02"}'),
            ("book_appointment", {"date": "2030-01-02", "time": "10:00"}),
        ],
    )

    headers, body = receiver.requests[0]
    assert headers["x-vapi-secret"] == "shh"
    assert "authorization" not in headers
    message = body["message"]
    assert message["type"] == "tool-calls"
    assert isinstance(message["timestamp"], int)
    assert message["call"]["id"] == CALL["id"]
    assert message["call"]["metadata"] == {"tenant_id": "t1"}
    first, second = message["toolCallList"]
    assert first["id"].startswith("call_") and first["id"] != second["id"]
    assert first["type"] == "function"
    assert first["function"] == {
        "name": "check_availability",
        "arguments": '{"date": "2030-01-02"}',
    }
    assert second["function"]["arguments"] == {"date": "2030-01-02", "time": "10:00"}
    paired = message["toolWithToolCallList"]
    assert [p["toolCall"] for p in paired] == message["toolCallList"]
    assert paired[0]["function"]["name"] == "check_availability"
    results = response.json()["results"]
    assert [r["toolCallId"] for r in results] == [first["id"], second["id"]]


async def test_status_update_envelope(messenger: tuple[VapiServerMessenger, Receiver]) -> None:
    sender, receiver = messenger

    await sender.status_update(CALL, "ended", ended_reason="customer-ended-call")

    message = receiver.requests[0][1]["message"]
    assert message["type"] == "status-update"
    assert message["status"] == "ended"
    assert message["endedReason"] == "customer-ended-call"
    assert message["call"]["status"] == "ended"


async def test_end_of_call_report_envelope(
    messenger: tuple[VapiServerMessenger, Receiver],
) -> None:
    sender, receiver = messenger
    started = datetime(2030, 1, 2, 9, 0, tzinfo=UTC)

    await sender.end_of_call_report(
        CALL,
        started,
        started + timedelta(minutes=2, seconds=30),
        0.2735,
        "assistant-ended-call",
        "AI: Hello\nUser: Hi",
        "https://storage.vapi.ai/rec.wav",
        "Booked a haircut.",
    )

    message = receiver.requests[0][1]["message"]
    assert message["type"] == "end-of-call-report"
    assert message["endedReason"] == "assistant-ended-call"
    assert message["startedAt"] == "2030-01-02T09:00:00.000Z"
    assert message["endedAt"] == "2030-01-02T09:02:30.000Z"
    assert message["durationSeconds"] == 150
    assert message["cost"] == 0.2735
    assert message["costBreakdown"]["total"] == 0.2735
    parts = ("transport", "stt", "llm", "tts", "vapi")
    assert sum(message["costBreakdown"][p] for p in parts) == pytest.approx(0.2735)
    assert message["artifact"]["transcript"] == "AI: Hello\nUser: Hi"
    assert message["artifact"]["recordingUrl"] == "https://storage.vapi.ai/rec.wav"
    assert message["analysis"]["summary"] == "Booked a haircut."
    assert message["call"]["id"] == CALL["id"]


async def test_assistant_request_envelope(
    messenger: tuple[VapiServerMessenger, Receiver],
) -> None:
    sender, receiver = messenger

    await sender.assistant_request(CALL)

    message = receiver.requests[0][1]["message"]
    assert message["type"] == "assistant-request"
    assert message["call"]["customer"] == {"number": "+33612345678"}
    assert message["phoneNumber"]["id"] == PHONE_NUMBER_ID


@pytest.fixture
def live_receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with ServerThread(receiver.app) as server:
        yield receiver, f"{server.base_url}/api/vapi/functions"


async def test_bearer_credential_over_a_real_socket_with_a_sandbox_call(
    env: Env, live_receiver: tuple[Receiver, str]
) -> None:
    receiver, url = live_receiver
    call = (await env.client.post("/call", json=bridge_body(), headers=AUTH)).json()

    async with VapiServerMessenger(url, "shh", bearer=True) as sender:
        response = await sender.tool_calls(call, [("create_ticket", {"subject": "Leak"})])

    assert response.status_code == 200
    headers, body = receiver.requests[0]
    assert headers["authorization"] == "Bearer shh"
    assert "x-vapi-secret" not in headers
    assert body["message"]["call"]["id"] == call["id"]
    assert body["message"]["call"]["metadata"] == {"tenant_id": "t1", "twilio_call_sid": "CA123"}


async def test_no_secret_means_no_credential_header(
    messenger: tuple[VapiServerMessenger, Receiver],
) -> None:
    _, receiver = messenger
    transport = httpx.ASGITransport(app=receiver.app)
    async with httpx.AsyncClient(transport=transport) as client:
        sender = VapiServerMessenger("http://gateway/api/vapi/functions", None, client)
        await sender.status_update(CALL, "in-progress")

    headers, _ = receiver.requests[0]
    assert "x-vapi-secret" not in headers and "authorization" not in headers


def test_unknown_fault_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        VapiSandbox(API_KEY).add_fault("429")
