"""The Telnyx emulator's own contract: Telnyx's Messaging API v2 wire, its life cycle, its
signed webhooks (checked here with `cryptography` alone, not with the gateway's code), its
fault switches and its control endpoints."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.sandbox.server import ServerThread, free_port_block
from gateway.sandbox.telnyx_api import TelnyxSandbox

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "KEY0123456789ABCDEF_sandbox"
SENDER = "+15550109999"
RECIPIENT = "+33612345678"


@dataclass
class Delivery:
    """One webhook request as the receiver got it."""

    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.raw)
        return loaded

    @property
    def event_type(self) -> str:
        return str(self.body["data"]["event_type"])

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.body["data"]["payload"]
        return payload


class Receiver:
    """The gateway's side of a webhook: records every request; `/{tag}/fail` answers 500,
    and the gateway's own Telnyx URL records under "gateway"."""

    def __init__(self) -> None:
        self.got: dict[str, list[Delivery]] = defaultdict(list)
        self.app = Starlette(
            routes=[
                Route("/webhooks/telnyx/events", self._gateway, methods=["POST"]),
                Route("/{tag}", self._ok, methods=["POST"]),
                Route("/{tag}/fail", self._fail, methods=["POST"]),
            ]
        )

    def _record(self, tag: str, delivery: Delivery) -> None:
        """Every delivery, except a later attempt at an event this receiver already got (the
        emulator tries again when the receiver answered too slowly, on a loaded machine, as
        Telnyx does; the `duplicate` switch's copies are first attempts and are kept)."""
        event_id = delivery.body["data"]["id"]
        again = delivery.body["meta"]["attempt"] > 1
        if not again or all(d.body["data"]["id"] != event_id for d in self.got[tag]):
            self.got[tag].append(delivery)

    async def _ok(self, request: Request) -> Response:
        delivery = Delivery(dict(request.headers), await request.body())
        self._record(request.path_params["tag"], delivery)
        return Response(status_code=200)

    async def _gateway(self, request: Request) -> Response:
        self._record("gateway", Delivery(dict(request.headers), await request.body()))
        return Response(status_code=204)

    async def _fail(self, request: Request) -> Response:
        tag = request.path_params["tag"] + "/fail"
        self.got[tag].append(Delivery(dict(request.headers), await request.body()))
        return Response(status_code=500)


@dataclass
class Running:
    sandbox: TelnyxSandbox
    base_url: str
    api: httpx.AsyncClient
    receiver: Receiver
    receiver_url: str

    def hook(self) -> tuple[str, list[Delivery]]:
        """A fresh webhook URL and the list its deliveries land in."""
        tag = uuid.uuid4().hex
        return f"{self.receiver_url}/{tag}", self.receiver.got[tag]

    def failing_hook(self) -> tuple[str, list[Delivery]]:
        tag = uuid.uuid4().hex
        return f"{self.receiver_url}/{tag}/fail", self.receiver.got[f"{tag}/fail"]

    async def send(self, **body: Any) -> httpx.Response:
        return await self.api.post(f"{self.base_url}/v2/messages", json=body)

    async def sms(self, text: str, **extra: Any) -> httpx.Response:
        """A message from the account's number to the recipient."""
        return await self.send(**{"from": SENDER, "to": RECIPIENT, "text": text, **extra})

    async def retrieve(self, message_id: str) -> httpx.Response:
        return await self.api.get(f"{self.base_url}/v2/messages/{message_id}")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[TelnyxSandbox, str, Receiver, str]]:
    sandbox = TelnyxSandbox(API_KEY, phone_number=SENDER)
    receiver = Receiver()
    with ServerThread(sandbox.app) as api, ServerThread(receiver.app) as hooks:
        yield sandbox, api.base_url, receiver, hooks.base_url


@pytest.fixture
async def telnyx(servers: tuple[TelnyxSandbox, str, Receiver, str]) -> AsyncIterator[Running]:
    sandbox, base_url, receiver, receiver_url = servers
    sandbox.reset()
    sandbox.callback_delay = 0.01
    sandbox.hang_seconds = 30.0
    sandbox.retry_after = 1
    sandbox.profile_webhook_url = None
    sandbox.webhooks.backoff = 0.01
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=5) as api:
        yield Running(sandbox, base_url, api, receiver, receiver_url)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def verified(delivery: Delivery, public_key: str) -> bool:
    """Telnyx's check: Ed25519 over `timestamp|body` with the account's public key."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
    stamp = delivery.headers["telnyx-timestamp"]
    signature = base64.b64decode(delivery.headers["telnyx-signature-ed25519"])
    try:
        key.verify(signature, stamp.encode() + b"|" + delivery.raw)
    except InvalidSignature:
        return False
    return True


def first_error(response: httpx.Response) -> dict[str, Any]:
    errors = response.json()["errors"]
    assert isinstance(errors, list) and len(errors) == 1
    error: dict[str, Any] = errors[0]
    return error


# -- sending ----------------------------------------------------------------------------------


async def test_send_answers_telnyxs_message_resource(telnyx: Running) -> None:
    url, _ = telnyx.hook()
    response = await telnyx.sms("Hello", webhook_url=url)

    assert response.status_code == 200
    data = response.json()["data"]
    assert uuid.UUID(data["id"])
    assert (data["record_type"], data["direction"], data["type"]) == ("message", "outbound", "SMS")
    assert data["from"]["phone_number"] == SENDER
    assert [(t["phone_number"], t["status"]) for t in data["to"]] == [(RECIPIENT, "queued")]
    assert (data["text"], data["parts"], data["encoding"]) == ("Hello", 1, "GSM-7")
    assert data["webhook_url"] == url
    assert data["cost"] == {"amount": "0.0070", "currency": "USD"}
    assert data["cost_breakdown"]["rate"] == {"amount": "0.0040", "currency": "USD"}
    assert data["errors"] == [] and data["sent_at"] is None and data["completed_at"] is None
    assert data["valid_until"] is not None
    assert [m["id"] for m in telnyx.sandbox.messages] == [data["id"]]


async def test_parts_and_cost_follow_the_encoding(telnyx: Running) -> None:
    long_gsm = await telnyx.sms("x" * 161)
    unicode = await telnyx.sms("Merci 🙂")

    assert (long_gsm.json()["data"]["parts"], long_gsm.json()["data"]["encoding"]) == (2, "GSM-7")
    assert long_gsm.json()["data"]["cost"]["amount"] == "0.0140"
    assert (unicode.json()["data"]["parts"], unicode.json()["data"]["encoding"]) == (1, "UCS-2")


async def test_a_messaging_profile_sends_from_the_accounts_number(telnyx: Running) -> None:
    response = await telnyx.send(to=RECIPIENT, text="hi", messaging_profile_id=str(uuid.uuid4()))

    assert response.status_code == 200
    assert response.json()["data"]["from"]["phone_number"] == SENDER


@pytest.mark.parametrize(
    ("headers", "why"),
    [({}, "no key"), ({"Authorization": "Bearer wrong"}, "wrong key"),
     ({"Authorization": f"Basic {API_KEY}"}, "wrong scheme")],
)  # fmt: skip
async def test_a_request_without_the_api_key_is_refused(
    telnyx: Running, headers: dict[str, str], why: str
) -> None:
    async with httpx.AsyncClient(headers=headers, timeout=5) as anonymous:
        sent = await anonymous.post(
            f"{telnyx.base_url}/v2/messages", json={"from": SENDER, "to": RECIPIENT, "text": "x"}
        )
        read = await anonymous.get(f"{telnyx.base_url}/v2/messages/{uuid.uuid4()}")

    for response in (sent, read):
        assert response.status_code == 401, why
        assert first_error(response)["code"] == "10009"
        assert first_error(response)["title"] == "Authentication failed"
    assert telnyx.sandbox.messages == []


@pytest.mark.parametrize(
    ("body", "status", "code", "pointer"),
    [
        ({"from": SENDER, "text": "x"}, 422, "10004", "/to"),
        ({"from": SENDER, "to": RECIPIENT}, 422, "10004", "/text"),
        ({"from": SENDER, "to": RECIPIENT, "text": ""}, 422, "10004", "/text"),
        ({"to": RECIPIENT, "text": "x"}, 422, "10004", "/from"),
        ({"from": SENDER, "to": "0612345678", "text": "x"}, 400, "40310", "/to"),
        ({"from": "not a sender!", "to": RECIPIENT, "text": "x"}, 400, "40305", "/from"),
    ],
)
async def test_an_invalid_send_is_refused_with_telnyxs_error(
    telnyx: Running, body: dict[str, Any], status: int, code: str, pointer: str
) -> None:
    response = await telnyx.send(**body)

    assert response.status_code == status
    error = first_error(response)
    assert (error["code"], error["source"]["pointer"]) == (code, pointer)
    assert error["title"] and error["meta"]["url"].endswith(f"/errors/{code}")
    assert telnyx.sandbox.messages == []


async def test_a_body_that_is_not_a_json_object_is_a_bad_request(telnyx: Running) -> None:
    response = await telnyx.api.post(f"{telnyx.base_url}/v2/messages", content=b"to=+33612345678")

    assert response.status_code == 400
    assert first_error(response)["code"] == "10015"


# -- reading it back --------------------------------------------------------------------------


async def test_retrieve_shows_the_message_as_it_is_now(telnyx: Running) -> None:
    sent = (await telnyx.sms("Hello")).json()["data"]
    await telnyx.sandbox.wait_for_status(sent["id"], "delivered")

    response = await telnyx.retrieve(sent["id"])

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == sent["id"]
    assert data["to"][0]["status"] == "delivered"
    assert data["sent_at"] is not None and data["completed_at"] is not None
    assert data["valid_until"] is None  # nulled once the message left the queue
    assert telnyx.sandbox.status_history(sent["id"]) == ["queued", "sending", "sent", "delivered"]


async def test_retrieve_of_an_unknown_or_malformed_id(telnyx: Running) -> None:
    unknown = await telnyx.retrieve(str(uuid.uuid4()))
    malformed = await telnyx.retrieve("SM123")

    assert (unknown.status_code, first_error(unknown)["code"]) == (404, "10005")
    assert (malformed.status_code, first_error(malformed)["code"]) == (400, "10006")


# -- webhooks ---------------------------------------------------------------------------------


async def test_webhooks_report_sent_then_finalized_signed_with_the_accounts_key(
    telnyx: Running,
) -> None:
    url, got = telnyx.hook()
    sent = await telnyx.sms("Hello", webhook_url=url)
    message_id = sent.json()["data"]["id"]

    await eventually(lambda: len(got) == 2)

    assert [d.event_type for d in got] == ["message.sent", "message.finalized"]
    assert [d.payload["to"][0]["status"] for d in got] == ["sent", "delivered"]
    assert all(d.payload["id"] == message_id for d in got)
    assert all(verified(d, telnyx.sandbox.public_key) for d in got)
    for delivery in got:
        assert abs(int(delivery.headers["telnyx-timestamp"]) - time.time()) < 300
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.body["meta"] == {"attempt": 1, "delivered_to": url}
        assert delivery.body["data"]["record_type"] == "event"
        assert uuid.UUID(delivery.body["data"]["id"]) != uuid.UUID(message_id)
    finalized = got[1].payload
    assert finalized["cost"] == {"amount": "0.0070", "currency": "USD"}
    assert finalized["completed_at"] is not None and finalized["errors"] == []
    assert got[0].body["data"]["id"] != got[1].body["data"]["id"]


async def test_a_signature_is_bound_to_its_body_and_key(telnyx: Running) -> None:
    url, got = telnyx.hook()
    await telnyx.sms("Hello", webhook_url=url)
    await eventually(lambda: len(got) == 2)

    tampered = Delivery(got[0].headers, got[0].raw.replace(b"Hello", b"Hellp"))
    other_key = base64.b64encode(
        Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    ).decode()
    assert not verified(tampered, telnyx.sandbox.public_key)
    assert not verified(got[0], other_key)


async def test_the_public_key_is_on_a_control_endpoint(telnyx: Running) -> None:
    response = await telnyx.api.get(f"{telnyx.base_url}/_sandbox/public_key")

    assert response.json() == {"public_key": telnyx.sandbox.public_key}
    assert len(base64.b64decode(telnyx.sandbox.public_key)) == 32


async def test_a_failing_url_is_tried_three_times_then_the_failover_url(telnyx: Running) -> None:
    primary, failed = telnyx.failing_hook()
    failover, got = telnyx.hook()
    await telnyx.sms("x", webhook_url=primary, webhook_failover_url=failover)

    await eventually(lambda: len(got) == 2)

    assert [d.body["meta"]["attempt"] for d in failed] == [1, 2, 3, 1, 2, 3]
    assert [d.body["meta"] for d in got] == [{"attempt": 1, "delivered_to": failover}] * 2
    assert [d.event_type for d in got] == ["message.sent", "message.finalized"]
    assert all(verified(d, telnyx.sandbox.public_key) for d in failed + got)


async def test_the_profile_webhook_serves_messages_sent_without_one(telnyx: Running) -> None:
    url, got = telnyx.hook()
    telnyx.sandbox.profile_webhook_url = url
    with_profile = await telnyx.sms("a")
    without = await telnyx.sms("b", use_profile_webhooks=False)
    await telnyx.sandbox.wait_for_status(without.json()["data"]["id"], "delivered")
    await eventually(lambda: len(got) == 2)

    assert {d.payload["id"] for d in got} == {with_profile.json()["data"]["id"]}


async def test_reorder_and_duplicate_switches(telnyx: Running) -> None:
    url, got = telnyx.hook()
    settings = await telnyx.api.post(
        f"{telnyx.base_url}/_sandbox/settings", json={"reorder": True, "duplicate": True}
    )
    assert settings.json()["reorder"] is True and settings.json()["duplicate"] is True

    await telnyx.sms("x", webhook_url=url)
    await eventually(lambda: len(got) == 4)

    assert [d.event_type for d in got] == ["message.finalized"] * 2 + ["message.sent"] * 2


async def test_inbound_posts_a_signed_message_received(telnyx: Running) -> None:
    url, got = telnyx.hook()
    response = await telnyx.api.post(
        f"{telnyx.base_url}/_sandbox/inbound",
        json={"from": RECIPIENT, "text": "STOP", "url": url},
    )
    assert response.status_code == 200

    await eventually(lambda: len(got) == 1)

    delivery = got[0]
    assert verified(delivery, telnyx.sandbox.public_key)
    assert delivery.event_type == "message.received"
    payload = delivery.payload
    assert (payload["direction"], payload["text"]) == ("inbound", "STOP")
    assert payload["from"]["phone_number"] == RECIPIENT
    assert payload["to"][0]["phone_number"] == SENDER
    assert payload["id"] == response.json()["event"]["payload"]["id"]


async def test_inbound_needs_a_sender_a_text_and_somewhere_to_post(telnyx: Running) -> None:
    no_url = await telnyx.api.post(
        f"{telnyx.base_url}/_sandbox/inbound", json={"from": RECIPIENT, "text": "hi"}
    )
    no_text = await telnyx.api.post(
        f"{telnyx.base_url}/_sandbox/inbound", json={"from": RECIPIENT, "url": "http://x"}
    )

    assert no_url.status_code == no_text.status_code == 400


# -- faults -----------------------------------------------------------------------------------


async def test_429_carries_telnyxs_rate_limit_headers(telnyx: Running) -> None:
    telnyx.sandbox.retry_after = 7
    telnyx.sandbox.add_fault("429")

    limited = await telnyx.sms("x")
    after = await telnyx.sms("x")

    assert limited.status_code == 429
    assert first_error(limited)["code"] == "10011"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"] == "7"
    assert after.status_code == 200
    assert len(telnyx.sandbox.messages) == 1


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [("500", 500, "10007"), ("40300", 409, "40300"), ("40305", 400, "40305"),
     ("40310", 400, "40310")],
)  # fmt: skip
async def test_a_refusing_fault_creates_no_message(
    telnyx: Running, fault: str, status: int, code: str
) -> None:
    telnyx.sandbox.add_fault(fault)

    response = await telnyx.sms("x")

    assert response.status_code == status
    assert first_error(response)["code"] == code
    assert telnyx.sandbox.messages == []
    assert telnyx.sandbox.pending_faults == []


async def test_the_stop_refusal_names_both_numbers(telnyx: Running) -> None:
    telnyx.sandbox.add_fault("40300")

    response = await telnyx.sms("x")

    assert first_error(response)["detail"] == (
        f"Messages cannot be sent from {SENDER} to {RECIPIENT} due to an existing block rule."
    )


async def test_40001_is_accepted_then_finalized_as_delivery_failed(telnyx: Running) -> None:
    url, got = telnyx.hook()
    telnyx.sandbox.add_fault("40001")

    sent = await telnyx.sms("x", webhook_url=url)
    await eventually(lambda: len(got) == 2)

    assert sent.status_code == 200
    finalized = got[1].payload
    assert finalized["to"][0]["status"] == "delivery_failed"
    assert [e["code"] for e in finalized["errors"]] == ["40001"]
    assert finalized["errors"][0]["title"] == "Not routable"


async def test_hang_creates_the_message_but_holds_the_answer(telnyx: Running) -> None:
    telnyx.sandbox.add_fault("hang")

    with pytest.raises(httpx.ReadTimeout):
        await telnyx.api.post(
            f"{telnyx.base_url}/v2/messages",
            json={"from": SENDER, "to": RECIPIENT, "text": "x"},
            timeout=0.3,
        )

    assert len(telnyx.sandbox.messages) == 1  # the message exists; only its answer was lost


async def test_faults_endpoint_queues_faults_and_refuses_unknown_ones(telnyx: Running) -> None:
    url = f"{telnyx.base_url}/_sandbox/faults"
    queued = await telnyx.api.post(url, json={"kind": "500", "count": 2})
    unknown = await telnyx.api.post(url, json={"kind": "21211"})
    no_count = await telnyx.api.post(url, json={"kind": "429", "count": 0})

    assert queued.json() == {"faults": ["500", "500"]}
    assert unknown.status_code == no_count.status_code == 400
    assert (await telnyx.api.get(url)).json() == {"faults": ["500", "500"]}


async def test_settings_endpoint_refuses_unknown_or_mistyped_settings(telnyx: Running) -> None:
    url = f"{telnyx.base_url}/_sandbox/settings"
    for bad in ({"nope": 1}, {"reorder": 1}, {"hang_every": 1.5}, {"callback_delay": -1}):
        response = await telnyx.api.post(url, json={"retry_after": 9, **bad})
        assert response.status_code == 400, bad
    assert (await telnyx.api.get(url)).json()["retry_after"] == 1  # nothing was applied

    applied = await telnyx.api.post(url, json={"hang_every": 3, "callback_delay": 0.02})
    assert (applied.json()["hang_every"], applied.json()["callback_delay"]) == (3, 0.02)


async def test_reset_forgets_messages_faults_and_counters(telnyx: Running) -> None:
    await telnyx.sms("x")
    telnyx.sandbox.add_fault("500")
    listed = (await telnyx.api.get(f"{telnyx.base_url}/_sandbox/messages")).json()
    assert (len(listed["messages"]), listed["create_requests"]) == (1, 1)

    reset = await telnyx.api.post(f"{telnyx.base_url}/_sandbox/reset")

    assert reset.json() == {"reset": True}
    listed = (await telnyx.api.get(f"{telnyx.base_url}/_sandbox/messages")).json()
    assert listed == {"messages": [], "create_requests": 0}
    assert telnyx.sandbox.pending_faults == []


# -- `gateway sandbox` ------------------------------------------------------------------------


def test_gateway_sandbox_serves_telnyx_as_its_settings_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The printed TELNYX_* settings reach the emulator it serves, whose inbound messages go
    to the gateway's Telnyx webhook signed with the printed public key."""
    shutil.copy(ROOT / "wrangler_like.toml", tmp_path / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", tmp_path / "database")
    for name in list(os.environ):
        if name.startswith(("GATEWAY_", "TELNYX_", "PUBLIC_BASE_URL")):
            monkeypatch.delenv(name)
    receiver = Receiver()
    base = free_port_block(5)
    errors_path = tmp_path / "sandbox.err"
    with ServerThread(receiver.app) as gateway_side, errors_path.open("w") as errors:
        env = {**os.environ, "PUBLIC_BASE_URL": gateway_side.base_url}
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "sandbox", "--base-port", str(base)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert process.stdout is not None
            printed: dict[str, str] = {}
            while "TELNYX_PHONE_NUMBER" not in printed:
                line = process.stdout.readline()
                assert line, f"the sandbox stopped: {errors_path.read_text()[-2000:]}"
                name, sep, value = line.strip().partition("=")
                if sep and name.startswith("TELNYX_"):
                    printed[name] = value
            assert printed["TELNYX_API_BASE"] == f"http://127.0.0.1:{base + 4}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    key = httpx.get(f"{printed['TELNYX_API_BASE']}/_sandbox/public_key", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None
                    time.sleep(0.1)
            assert key.json()["public_key"] == printed["TELNYX_PUBLIC_KEY"]
            sent = httpx.post(
                f"{printed['TELNYX_API_BASE']}/v2/messages",
                headers={"Authorization": f"Bearer {printed['TELNYX_API_KEY']}"},
                json={"from": printed["TELNYX_PHONE_NUMBER"], "to": RECIPIENT, "text": "x"},
                timeout=5,
            )
            assert sent.status_code == 200
            httpx.post(
                f"{printed['TELNYX_API_BASE']}/_sandbox/inbound",
                json={"from": RECIPIENT, "text": "Bonjour"},
                timeout=5,
            )

            def inbound() -> list[Delivery]:
                # the message sent above reports to the same URL, its profile's webhook
                got = receiver.got["gateway"]
                return [d for d in got if d.event_type == "message.received"]

            while not inbound() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            process.terminate()
            process.communicate(timeout=20)  # also closes its stdout
    [received] = inbound()
    assert verified(received, printed["TELNYX_PUBLIC_KEY"])
    assert received.payload["to"][0]["phone_number"] == printed["TELNYX_PHONE_NUMBER"]
    assert received.payload["text"] == "Bonjour"
