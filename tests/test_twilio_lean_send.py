"""The lean Twilio send (gateway/providers/twilio/rest.py) against what the official library
sends: both go to one loopback server that records every request and answers what a test
tells it, so the request bytes (path, auth, headers, form fields) and the reading of every
answer (resource, each class of error) can be compared side by side."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from gateway.domain.errors import ProviderError
from gateway.domain.messages import OutboundMessage, SendResult
from gateway.providers.twilio.sms import HttpxTwilioClient, TwilioSms, classify
from gateway.sandbox.server import ServerThread

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "lean-send-token"
RESOURCE = {
    "sid": "SM" + "ab" * 16,
    "status": "queued",
    "num_segments": "2",
    "to": "+33612345678",
    "body": "x",
}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: list[tuple[str, str]]


@dataclass
class Recorder:
    """Records each request; answers with `status` and `body` (the resource by default)."""

    status: int = 201
    body: str | bytes = json.dumps(RESOURCE)
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        raw = (await request.body()).decode()
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                {k.lower(): v for k, v in request.headers.items()},
                parse_qsl(raw, keep_blank_values=True),
            )
        )
        moved = {"Location": "/moved"} if 300 <= self.status < 400 else None
        return Response(
            self.body, status_code=self.status, media_type="application/json", headers=moved
        )


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()
    app = Starlette(routes=[Route("/{path:path}", recorder.handle, methods=["GET", "POST"])])
    with ServerThread(app) as server:
        yield recorder, server.base_url


@pytest.fixture
def server(served: tuple[Recorder, str]) -> tuple[Recorder, str]:
    recorder, base_url = served
    recorder.seen.clear()
    recorder.status, recorder.body = 201, json.dumps(RESOURCE)
    return recorder, base_url


def _message(sender: str | None, callback: str | None) -> OutboundMessage:
    return OutboundMessage(
        id="msg_1",
        tenant_id="ten_1",
        to="+33612345678",
        body="Bonjour & à demain = 100% sûr",
        config=None,
        sender=sender,
        subject=None,
        html_body=None,
        template=None,
        status_callback=callback,
    )


async def _library_send(base_url: str, message: OutboundMessage) -> Any:
    """The send as it was made before: `messages.create_async` of the official library."""
    kwargs: dict[str, Any] = {"to": message.to, "body": message.body}
    if message.sender and message.sender.startswith("MG"):
        kwargs["messaging_service_sid"] = message.sender
    else:
        kwargs["from_"] = message.sender
    if message.status_callback:
        kwargs["status_callback"] = message.status_callback
    async with httpx.AsyncClient() as http:
        client = Client(ACCOUNT, TOKEN, http_client=HttpxTwilioClient(base_url, http))
        return await client.messages.create_async(**kwargs)


async def _lean_send(base_url: str, message: OutboundMessage) -> SendResult:
    sms = TwilioSms(ACCOUNT, TOKEN, base_url)
    try:
        return await sms.send(message)
    finally:
        await sms.aclose()


@pytest.mark.parametrize(
    ("sender", "callback"),
    [
        ("+15017122661", "https://gw.example/webhooks/twilio/status?mid=msg_1&x=a b"),
        ("MG" + "cd" * 16, "https://gw.example/webhooks/twilio/status?mid=msg_1"),
        ("+15017122661", None),
        ("ACME", None),  # an alphanumeric sender id
        (None, None),
    ],
)
async def test_the_lean_send_makes_the_request_the_library_makes(
    server: tuple[Recorder, str], sender: str | None, callback: str | None
) -> None:
    recorder, base_url = server
    message = _message(sender, callback)
    await _library_send(base_url, message)
    await _lean_send(base_url, message)
    library, lean = recorder.seen
    assert lean.method == library.method == "POST"
    assert lean.path == library.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert lean.form == library.form  # the same fields, values and order
    for name in (
        "authorization",
        "content-type",
        "accept",
        "accept-charset",
        "user-agent",
        "x-twilio-client",
    ):
        assert lean.headers.get(name) == library.headers.get(name), name
    assert lean.headers["authorization"].startswith("Basic ")


async def test_the_lean_send_reads_the_resource_as_the_library_does(
    server: tuple[Recorder, str],
) -> None:
    _, base_url = server
    message = _message("+15017122661", None)
    library = await _library_send(base_url, message)
    lean = await _lean_send(base_url, message)
    assert lean.provider_message_id == library.sid == RESOURCE["sid"]
    assert lean.provider_status == library.status == "queued"
    assert lean.num_segments == int(library.num_segments) == 2


def _twilio_error(code: int, message: str) -> str:
    more = f"https://www.twilio.com/docs/errors/{code}"
    return json.dumps({"code": code, "message": message, "more_info": more, "status": 400})


# every class of answer the send maps: rate limit, server errors, credentials, each
# permanent code (one of them suppressing), an unknown refusal, an RFC 9457 problem body,
# bodies that are not Twilio's JSON
ERRORS = [
    (429, _twilio_error(20429, "Too Many Requests")),
    (429, "rate limited"),
    (500, _twilio_error(20500, "Internal Server Error")),
    (503, "<html>unavailable</html>"),
    (401, _twilio_error(20003, "Authenticate")),
    (403, _twilio_error(20003, "Permission denied")),
    (400, _twilio_error(21211, "The 'To' number is not a valid phone number.")),
    (400, _twilio_error(21610, "Attempt to send to unsubscribed recipient")),
    (400, _twilio_error(21614, "'To' number is not a valid mobile number")),
    (400, _twilio_error(30006, "Landline or unreachable carrier")),
    (400, _twilio_error(21602, "Message body is required.")),
    (400, json.dumps({"message": "no code"})),
    (404, "not json"),
    (302, ""),  # a redirect is not followed
    (400, b"\xff\xfe not utf-8"),
    (
        400,
        json.dumps(
            {"type": "https://www.twilio.com/docs/errors/21211", "title": "Invalid"}
            | {"status": 400, "code": 21211, "detail": "bad To"}
        ),
    ),
]


@pytest.mark.parametrize(("status", "body"), ERRORS)
async def test_the_lean_send_maps_each_error_as_the_library_path_does(
    server: tuple[Recorder, str], status: int, body: str | bytes
) -> None:
    recorder, base_url = server
    recorder.status, recorder.body = status, body
    message = _message("+15017122661", None)
    with pytest.raises(TwilioException) as library:
        await _library_send(base_url, message)
    expected = classify(library.value)
    with pytest.raises(ProviderError) as lean:
        await _lean_send(base_url, message)
    got = lean.value
    assert (got.kind, got.code, got.reason, got.suppress) == (
        expected.kind,
        expected.code,
        expected.reason,
        expected.suppress,
    )


async def test_a_closed_port_is_transient_as_before() -> None:
    with pytest.raises(ProviderError) as lean:
        await _lean_send("http://127.0.0.1:9", _message("+15017122661", None))
    assert lean.value.kind == "transient"


async def _dropping_server(answer: bytes) -> tuple[asyncio.Server, str]:
    """A loopback server that reads the request, writes `answer` (maybe nothing) and hangs
    up: the request reached the provider, its answer was lost."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "answer",
    [b"", b'HTTP/1.1 201 Created\r\nContent-Length: 500\r\n\r\n{"sid":'],
    ids=["no answer", "cut answer"],
)
async def test_a_lost_answer_is_unknown_as_before(answer: bytes) -> None:
    server, base_url = await _dropping_server(answer)
    message = _message("+15017122661", None)
    try:
        with pytest.raises(httpx.HTTPError) as library:
            await _library_send(base_url, message)
        with pytest.raises(ProviderError) as lean:
            await _lean_send(base_url, message)
    finally:
        server.close()
        await server.wait_closed()
    assert classify(library.value).kind == lean.value.kind == "unknown"
