from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient, HttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.twilio_api import (
    TwilioSandbox,
    inbound_sms_params,
    post_signed_form,
    voice_call_params,
)

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "sandbox-auth-token"
SENDER = "+15017122661"
RECIPIENT = "+15558675310"
TWILIO_BASE = "https://api.twilio.com"


@dataclass
class Running:
    sandbox: TwilioSandbox
    base_url: str
    api: httpx.AsyncClient

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"

    async def create(self, **form: str) -> httpx.Response:
        return await self.api.post(self.messages_url, data=form)

    async def fetch(self, sid: str) -> httpx.Response:
        return await self.api.get(
            f"{self.base_url}/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json"
        )


class Receiver:
    """The gateway's side of a status callback: validates Twilio's signature like the gateway.

    Each test posts to its own path, so one server serves the whole module.
    """

    def __init__(self, public_url: str | None = None) -> None:
        self.public_url = public_url
        self.accepted: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.rejected: dict[str, int] = defaultdict(int)
        self.app = Starlette(routes=[Route("/{tag}", self._status, methods=["POST"])])

    async def _status(self, request: Request) -> Response:
        params = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        url = self.public_url or str(request.url)
        signature = request.headers.get("X-Twilio-Signature", "")
        tag = request.path_params["tag"]
        if not RequestValidator(TOKEN).validate(url, params, signature):
            self.rejected[tag] += 1
            return Response(status_code=403)
        self.accepted[tag].append(params)
        return Response(status_code=204)


@dataclass
class Inbox:
    receiver: Receiver
    tag: str

    @property
    def accepted(self) -> list[dict[str, str]]:
        return self.receiver.accepted[self.tag]

    @property
    def rejected(self) -> int:
        return self.receiver.rejected[self.tag]

    def statuses(self) -> list[str]:
        return [params["MessageStatus"] for params in self.accepted]


@pytest.fixture(scope="module")
def served_sandbox() -> Iterator[tuple[TwilioSandbox, str]]:
    sandbox = TwilioSandbox(ACCOUNT, TOKEN)
    with ServerThread(sandbox.app) as server:
        yield sandbox, server.base_url


@pytest.fixture
async def twilio(served_sandbox: tuple[TwilioSandbox, str]) -> AsyncIterator[Running]:
    sandbox, base_url = served_sandbox
    sandbox.reset()
    sandbox.callback_delay = 0.01
    sandbox.hang_seconds = 30.0
    sandbox.callbacks.backoff = 0.01
    async with httpx.AsyncClient(auth=(ACCOUNT, TOKEN), timeout=5) as api:
        yield Running(sandbox, base_url, api)


@pytest.fixture(scope="module")
def served_receiver() -> Iterator[tuple[Receiver, str]]:
    target = Receiver()
    with ServerThread(target.app) as server:
        yield target, server.base_url


@pytest.fixture
def receiver(served_receiver: tuple[Receiver, str]) -> tuple[Inbox, str]:
    target, base_url = served_receiver
    tag = uuid.uuid4().hex
    return Inbox(target, tag), f"{base_url}/{tag}"


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- the official twilio library, pointed at the sandbox ------------------------------------------


class LoopbackHttpClient(HttpClient):  # type: ignore[misc]
    def __init__(self, base_url: str) -> None:
        super().__init__(logging.getLogger("test"), is_async=False)
        self.base_url = base_url

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        with httpx.Client(timeout=timeout or 5) as client:
            response = client.request(
                method,
                uri.replace(TWILIO_BASE, self.base_url),
                params=params,
                data=data,
                headers=headers,
                auth=auth,
            )
        return TwilioResponse(response.status_code, response.text, response.headers)


class AsyncLoopbackHttpClient(AsyncHttpClient):  # type: ignore[misc]
    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        super().__init__(logging.getLogger("test"), is_async=True)
        self.client = client
        self.base_url = base_url

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's interface
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        response = await self.client.request(
            method,
            uri.replace(TWILIO_BASE, self.base_url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
        )
        return TwilioResponse(response.status_code, response.text, response.headers)


def test_the_official_library_sends_a_message_and_reads_the_real_resource() -> None:
    sandbox = TwilioSandbox(ACCOUNT, TOKEN, callback_delay=0.01)
    with ServerThread(sandbox.app) as server:
        client = Client(ACCOUNT, TOKEN, http_client=LoopbackHttpClient(server.base_url))
        message = client.messages.create(to=RECIPIENT, from_=SENDER, body="Your table is ready")

        assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
        assert message.account_sid == ACCOUNT
        assert message.status == "queued"
        assert (message.to, message.from_) == (RECIPIENT, SENDER)
        assert message.body == "Your table is ready"
        assert message.num_segments == "1"
        assert message.direction == "outbound-api"
        assert message.price is None
        assert message.error_code is None
        assert message.date_created is not None and message.date_created.tzinfo is not None
        assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{message.sid}.json"
        assert [m["sid"] for m in sandbox.messages] == [message.sid]

        with pytest.raises(TwilioRestException) as rejected:
            client.messages.create(to="+15005550004", from_=SENDER, body="hi")
        assert (rejected.value.status, rejected.value.code) == (400, 21610)


async def test_the_async_library_sees_price_only_once_the_message_is_final(
    twilio: Running,
) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        client = Client(ACCOUNT, TOKEN, http_client=AsyncLoopbackHttpClient(http, twilio.base_url))
        two_segments = "x" * 161
        message = await client.messages.create_async(to=RECIPIENT, from_=SENDER, body=two_segments)
        assert (message.status, message.num_segments, message.price) == ("queued", "2", None)

        await twilio.sandbox.wait_for_status(message.sid, "delivered")
        fetched = await client.messages(message.sid).fetch_async()
        assert fetched.status == "delivered"
        assert fetched.price == "-0.01580"
        assert fetched.price_unit == "USD"
        assert fetched.num_segments == "2"
        assert fetched.date_sent is not None


# -- the wire format ------------------------------------------------------------------------------


async def test_create_answers_twilios_json_resource(twilio: Running) -> None:
    response = await twilio.create(To=RECIPIENT, From=SENDER, Body="hello")

    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    resource = response.json()
    assert set(resource) == {
        "account_sid", "api_version", "body", "date_created", "date_sent", "date_updated",
        "direction", "error_code", "error_message", "from", "messaging_service_sid",
        "num_media", "num_segments", "price", "price_unit", "sid", "status",
        "subresource_uris", "to", "uri",
    }  # fmt: skip
    assert resource["api_version"] == "2010-04-01"
    assert resource["num_media"] == "0"
    assert resource["error_message"] is None
    assert resource["messaging_service_sid"] is None
    assert resource["date_sent"] is None
    assert re.fullmatch(
        r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", resource["date_created"]
    )
    assert parsedate_to_datetime(resource["date_updated"]).tzinfo is not None


async def test_a_messaging_service_message_starts_accepted(
    twilio: Running, receiver: tuple[Inbox, str]
) -> None:
    target, url = receiver
    service = "MG" + "1" * 32
    created = await twilio.create(
        To=RECIPIENT, MessagingServiceSid=service, Body="hi", StatusCallback=url
    )

    resource = created.json()
    assert (resource["status"], resource["messaging_service_sid"]) == ("accepted", service)
    assert resource["num_segments"] == "0"  # Twilio counts once a sender is chosen
    await eventually(lambda: "delivered" in target.statuses())
    assert target.statuses() == ["queued", "sent", "delivered"]
    assert target.accepted[0]["MessagingServiceSid"] == service
    final = (await twilio.fetch(resource["sid"])).json()
    assert final["num_segments"] == "1" and final["from"]


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, "1"),
        ("a" * 161, "2"),
        ("a" * 306, "2"),
        ("a" * 307, "3"),
        ("€" * 80, "1"),  # extension characters cost two septets each
        ("€" * 81, "2"),
        ("ж" * 70, "1"),  # one non-GSM character forces UCS-2
        ("ж" * 71, "2"),
        ("😀" * 35, "1"),  # counted in UTF-16 code units
        ("😀" * 36, "2"),
    ],
)
async def test_num_segments_follows_the_encoding(twilio: Running, body: str, segments: str) -> None:
    response = await twilio.create(To=RECIPIENT, From=SENDER, Body=body)
    assert response.json()["num_segments"] == segments


@pytest.mark.parametrize(
    "auth",
    [(ACCOUNT, "wrong-token"), ("AC" + "f" * 32, TOKEN), None],
    ids=["wrong-token", "wrong-account", "no-auth"],
)
async def test_bad_credentials_get_twilios_401(
    twilio: Running, auth: tuple[str, str] | None
) -> None:
    async with httpx.AsyncClient(auth=auth) as anonymous:
        response = await anonymous.post(twilio.messages_url, data={"To": RECIPIENT, "Body": "x"})

    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert twilio.sandbox.messages == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": SENDER, "Body": "hi"}, 21604),
        ({"To": RECIPIENT, "From": SENDER}, 21602),
        ({"To": RECIPIENT, "Body": "hi"}, 21603),
        ({"To": "not-a-number", "From": SENDER, "Body": "hi"}, 21211),
    ],
)
async def test_invalid_requests_are_rejected_like_twilio(
    twilio: Running, form: dict[str, str], code: int
) -> None:
    response = await twilio.create(**form)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


async def test_unknown_message_is_a_twilio_404(twilio: Running) -> None:
    response = await twilio.fetch("SM" + "0" * 32)

    assert response.status_code == 404
    assert response.json()["code"] == 20404


# -- faults and magic numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("429", 429, 20429),
        ("500", 500, 20500),
        ("21211", 400, 21211),
        ("21610", 400, 21610),
        ("21614", 400, 21614),
    ],
)
async def test_a_fault_fails_the_next_request_only(
    twilio: Running, kind: str, status: int, code: int
) -> None:
    twilio.sandbox.add_fault(kind)

    failed = await twilio.create(To=RECIPIENT, From=SENDER, Body="hi")
    succeeded = await twilio.create(To=RECIPIENT, From=SENDER, Body="hi")

    assert (failed.status_code, failed.json()["code"]) == (status, code)
    assert failed.json()["status"] == status
    if kind == "429":
        assert failed.headers["Retry-After"] == "1"
    assert succeeded.status_code == 201
    assert twilio.sandbox.create_requests == 2
    assert len(twilio.sandbox.messages) == 1


async def test_faults_can_be_queued_over_http(twilio: Running) -> None:
    queued = await twilio.api.post(
        f"{twilio.base_url}/_sandbox/faults", json={"kind": "429", "count": 2}
    )
    assert queued.json() == {"faults": ["429", "429"]}

    codes = [(await twilio.create(To=RECIPIENT, From=SENDER, Body="x")).status_code for _ in "abc"]

    assert codes == [429, 429, 201]
    bad = await twilio.api.post(f"{twilio.base_url}/_sandbox/faults", json={"kind": "teapot"})
    assert bad.status_code == 400


async def test_hang_creates_the_message_but_answers_too_late(twilio: Running) -> None:
    twilio.sandbox.add_fault("hang")

    with pytest.raises(httpx.ReadTimeout):
        await twilio.api.post(
            twilio.messages_url, data={"To": RECIPIENT, "From": SENDER, "Body": "hi"}, timeout=0.3
        )

    [message] = twilio.sandbox.messages
    await twilio.sandbox.wait_for_status(message["sid"], "delivered")


async def test_a_hang_shorter_than_the_client_timeout_still_answers(twilio: Running) -> None:
    await twilio.api.post(f"{twilio.base_url}/_sandbox/settings", json={"hang_seconds": 0.05})
    twilio.sandbox.add_fault("hang")

    response = await twilio.create(To=RECIPIENT, From=SENDER, Body="hi")

    assert response.status_code == 201
    assert [m["sid"] for m in twilio.sandbox.messages] == [response.json()["sid"]]


@pytest.mark.parametrize(
    ("to", "code"), [("+15005550001", 21211), ("+15005550004", 21610), ("+15005550009", 21614)]
)
async def test_magic_numbers_are_rejected_without_a_switch(
    twilio: Running, to: str, code: int
) -> None:
    response = await twilio.create(To=to, From=SENDER, Body="hi")

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert twilio.sandbox.messages == []


@pytest.mark.parametrize("how", ["magic-number", "fault"])
async def test_30006_is_accepted_then_undelivered(
    twilio: Running, receiver: tuple[Inbox, str], how: str
) -> None:
    target, url = receiver
    to = "+15005550006" if how == "magic-number" else RECIPIENT
    if how == "fault":
        twilio.sandbox.add_fault("30006")

    created = await twilio.create(To=to, From=SENDER, Body="hi", StatusCallback=url)
    assert created.status_code == 201
    sid = created.json()["sid"]
    final = await twilio.sandbox.wait_for_status(sid, "undelivered")

    assert final["error_code"] == 30006
    assert final["price"] == "-0.00790"
    await eventually(lambda: "undelivered" in target.statuses())
    assert target.accepted[-1]["ErrorCode"] == "30006"
    assert "ErrorCode" not in target.accepted[0]


# -- life cycle and status callbacks --------------------------------------------------------------


async def test_life_cycle_posts_signed_callbacks_for_sent_and_delivered(
    twilio: Running, receiver: tuple[Inbox, str]
) -> None:
    target, url = receiver
    callback = f"{url}?tenant=acme"  # signed over the exact URL, query included
    created = await twilio.create(To=RECIPIENT, From=SENDER, Body="hi", StatusCallback=callback)
    sid = created.json()["sid"]

    await twilio.sandbox.wait_for_status(sid, "delivered")
    await eventually(lambda: len(target.accepted) == 2)

    assert twilio.sandbox.status_history(sid) == ["queued", "sending", "sent", "delivered"]
    assert target.statuses() == ["sent", "delivered"]
    assert target.rejected == 0
    sent = target.accepted[0]
    assert sent["MessageSid"] == sent["SmsSid"] == sid
    assert sent["SmsStatus"] == "sent"
    assert (sent["AccountSid"], sent["From"], sent["To"]) == (ACCOUNT, SENDER, RECIPIENT)
    assert sent["ApiVersion"] == "2010-04-01"
    assert "ErrorCode" not in sent
    assert re.fullmatch(r"\d{10}", target.accepted[1]["RawDlrDoneDate"])
    final = (await twilio.fetch(sid)).json()
    assert (final["status"], final["price"], final["error_code"]) == ("delivered", "-0.00790", None)


async def test_price_is_null_until_the_final_status(twilio: Running) -> None:
    twilio.sandbox.callback_delay = 0.05
    created = (await twilio.create(To=RECIPIENT, From=SENDER, Body="hi")).json()
    seen = [created]
    while seen[-1]["status"] != "delivered":
        seen.append((await twilio.fetch(created["sid"])).json())

    assert {r["status"] for r in seen} >= {"queued", "delivered"}
    assert all(r["price"] is None for r in seen if r["status"] != "delivered")
    assert seen[-1]["price"] == "-0.00790"


async def test_reorder_sends_delivered_before_sent(
    twilio: Running, receiver: tuple[Inbox, str]
) -> None:
    target, url = receiver
    twilio.sandbox.reorder = True

    await twilio.create(To=RECIPIENT, From=SENDER, Body="hi", StatusCallback=url)
    await eventually(lambda: len(target.accepted) == 2)

    assert target.statuses() == ["delivered", "sent"]


async def test_duplicate_sends_each_callback_twice(
    twilio: Running, receiver: tuple[Inbox, str]
) -> None:
    target, url = receiver
    settings = await twilio.api.post(
        f"{twilio.base_url}/_sandbox/settings", json={"duplicate": True}
    )
    assert settings.json()["duplicate"] is True

    await twilio.create(To=RECIPIENT, From=SENDER, Body="hi", StatusCallback=url)
    await eventually(lambda: len(target.accepted) == 4)

    assert target.statuses() == ["sent", "sent", "delivered", "delivered"]
    assert target.accepted[0] == target.accepted[1]


async def test_callbacks_to_a_dead_receiver_are_dropped_without_harm(twilio: Running) -> None:
    dead = f"http://127.0.0.1:{free_port()}/status"
    sid = (await twilio.create(To=RECIPIENT, From=SENDER, Body="a", StatusCallback=dead)).json()[
        "sid"
    ]

    await twilio.sandbox.wait_for_status(sid, "delivered")
    await eventually(lambda: twilio.sandbox.callbacks.dropped == 2)
    later = await twilio.create(To=RECIPIENT, From=SENDER, Body="b")
    assert later.status_code == 201


async def test_control_endpoints_list_and_reset(twilio: Running) -> None:
    twilio.sandbox.add_fault("500")
    await twilio.create(To=RECIPIENT, From=SENDER, Body="one")
    await twilio.create(To=RECIPIENT, From=SENDER, Body="two")

    listed = (await twilio.api.get(f"{twilio.base_url}/_sandbox/messages")).json()
    assert [m["body"] for m in listed["messages"]] == ["two"]
    assert listed["create_requests"] == 2

    bad = await twilio.api.post(f"{twilio.base_url}/_sandbox/settings", json={"reorder": "yes"})
    assert bad.status_code == 400
    reset = await twilio.api.post(f"{twilio.base_url}/_sandbox/reset")
    assert reset.status_code == 200
    assert twilio.sandbox.messages == [] and twilio.sandbox.create_requests == 0


# -- playing Twilio's side of inbound webhooks ----------------------------------------------------


async def test_signed_form_validates_over_the_public_url_and_tampering_fails() -> None:
    target = Receiver(public_url="https://gateway.example.com/status")
    params = inbound_sms_params(RECIPIENT, SENDER, "STOP", ACCOUNT)
    with ServerThread(target.app) as server:
        loopback = f"{server.base_url}/inbound"
        async with httpx.AsyncClient() as client:
            good = await post_signed_form(
                client, loopback, params, TOKEN, signing_url=target.public_url
            )
            wrong_url = await post_signed_form(client, loopback, params, TOKEN)
            wrong_token = await post_signed_form(
                client, loopback, params, "other-token", signing_url=target.public_url
            )

    assert (good.status_code, wrong_url.status_code, wrong_token.status_code) == (204, 403, 403)
    assert target.accepted["inbound"] == [params]


def test_inbound_sms_params_carry_twilios_fields() -> None:
    params = inbound_sms_params(RECIPIENT, SENDER, "hello", ACCOUNT)

    assert re.fullmatch(r"SM[0-9a-f]{32}", params["MessageSid"])
    assert params["SmsSid"] == params["MessageSid"]
    assert (params["From"], params["To"], params["Body"]) == (RECIPIENT, SENDER, "hello")
    assert (params["AccountSid"], params["ApiVersion"]) == (ACCOUNT, "2010-04-01")
    assert (params["NumMedia"], params["NumSegments"], params["SmsStatus"]) == (
        "0",
        "1",
        "received",
    )
    assert params["FromCountry"] == "US"


def test_voice_call_params_forwarding_and_sip_headers() -> None:
    plain = voice_call_params(RECIPIENT, SENDER, ACCOUNT)
    forwarded = voice_call_params(
        RECIPIENT, SENDER, ACCOUNT, forwarded_from="+15550001111", sip_headers={"X-Tenant": "acme"}
    )

    assert re.fullmatch(r"CA[0-9a-f]{32}", plain["CallSid"])
    assert (plain["Caller"], plain["Called"]) == (RECIPIENT, SENDER)
    assert (plain["CallStatus"], plain["Direction"]) == ("ringing", "inbound")
    assert plain["ApiVersion"] == "2010-04-01"
    assert "ForwardedFrom" not in plain
    assert forwarded["ForwardedFrom"] == "+15550001111"
    assert forwarded["SipHeader_X-Tenant"] == "acme"


# -- serving it ------------------------------------------------------------------------------------


async def test_the_sandbox_runs_in_process_with_callbacks_to_an_asgi_app() -> None:
    target = Receiver()
    sandbox = TwilioSandbox(
        ACCOUNT, TOKEN, callback_delay=0.01, callback_transport=httpx.ASGITransport(target.app)
    )
    transport = httpx.ASGITransport(sandbox.app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://twilio.test", auth=(ACCOUNT, TOKEN)
        ) as api:
            created = await api.post(
                f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
                data={"To": RECIPIENT, "From": SENDER, "Body": "hi"}
                | {"StatusCallback": "https://gateway.test/inproc?x=1"},
            )
            await sandbox.wait_for_status(created.json()["sid"], "delivered")
            await eventually(lambda: len(target.accepted["inproc"]) == 2)
    finally:
        await sandbox.aclose()

    assert [p["MessageStatus"] for p in target.accepted["inproc"]] == ["sent", "delivered"]


def test_run_serves_the_sandbox_in_the_foreground() -> None:
    port = free_port()
    code = "from gateway.sandbox.twilio_api import run; run('127.0.0.1', {}, {!r}, {!r})"
    command = [sys.executable, "-c", code.format(port, ACCOUNT, TOKEN)]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1])
    try:
        url = f"http://127.0.0.1:{port}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.post(
                    url, data={"To": RECIPIENT, "From": SENDER, "Body": "hi"}, auth=(ACCOUNT, TOKEN)
                )
                break
            except httpx.ConnectError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 201
        assert response.json()["status"] == "queued"
    finally:
        process.terminate()
        process.wait(timeout=10)
