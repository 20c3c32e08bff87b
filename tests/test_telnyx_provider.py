"""The Telnyx provider against the Telnyx emulator over real loopback sockets: what it sends,
what it reads back, how each failure is classified, and how its webhooks are verified and
parsed into the project's own types."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.domain.errors import ProviderError
from gateway.domain.messages import OutboundMessage, ProviderMessage
from gateway.providers.base import (
    Lookup,
    Sender,
    WebhookEvents,
    WebhookRejected,
    WebhookRequest,
    WebhookSource,
)
from gateway.providers.telnyx import TelnyxSms, TelnyxWebhooks
from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.telnyx_api import TelnyxSandbox, inbound_event, post_signed_event, sign

API_KEY = "KEY_provider_test_0123456789"
NUMBER = "+15550107777"
CUSTOMER = "+33612345678"
PROFILE = "40017f4c-7c34-4ae5-8d6f-0a9a5b3c2e11"


class Gateway:
    """Our webhook endpoint: every request is verified and parsed by TelnyxWebhooks exactly
    as the web layer hands it over; what was accepted and what was rejected is kept."""

    def __init__(self, webhooks: TelnyxWebhooks) -> None:
        self.webhooks = webhooks
        self.events: dict[str, list[WebhookEvents]] = defaultdict(list)
        self.rejected: dict[str, list[str]] = defaultdict(list)
        self.app = Starlette(routes=[Route("/webhooks/telnyx/{tag}", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        tag = request.path_params["tag"]
        incoming = webhook_request(
            str(request.url), dict(request.headers), await request.body(), request
        )
        try:
            self.webhooks.verify("events", incoming)
        except WebhookRejected as rejected:
            self.rejected[tag].append(rejected.reason)
            return Response(status_code=403)
        parsed = self.webhooks.parse("events", incoming)
        self.events[tag].append(parsed)
        return Response(status_code=parsed.reply.status)


def webhook_request(
    url: str, headers: dict[str, str], body: bytes, request: Request | None = None
) -> WebhookRequest:
    query = dict(request.query_params) if request is not None else {}
    lowered = {name.lower(): value for name, value in headers.items()}
    return WebhookRequest("POST", url, lowered, body, query)


@dataclass
class Stack:
    sandbox: TelnyxSandbox
    api_url: str
    gateway: Gateway
    gateway_url: str
    sms: TelnyxSms

    def hook(self, query: str = "") -> tuple[str, str]:
        """A fresh webhook URL on our side and the tag its events are kept under."""
        tag = uuid.uuid4().hex
        return f"{self.gateway_url}/webhooks/telnyx/{tag}{query}", tag

    def provider(self, **options: Any) -> TelnyxSms:
        options.setdefault("sender", NUMBER)
        return TelnyxSms(options.pop("api_key", API_KEY), self.api_url, **options)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[TelnyxSandbox, str, Gateway, str]]:
    sandbox = TelnyxSandbox(API_KEY, phone_number=NUMBER, messaging_profile_id=PROFILE)
    gateway = Gateway(TelnyxWebhooks(sandbox.public_key))
    with ServerThread(sandbox.app) as api, ServerThread(gateway.app) as ours:
        yield sandbox, api.base_url, gateway, ours.base_url


@pytest.fixture
async def stack(servers: tuple[TelnyxSandbox, str, Gateway, str]) -> AsyncIterator[Stack]:
    sandbox, api_url, gateway, gateway_url = servers
    sandbox.reset()
    sandbox.callback_delay = 0.01
    sandbox.hang_seconds = 30.0
    sandbox.retry_after = 1
    sandbox.webhooks.backoff = 0.01
    sms = TelnyxSms(API_KEY, api_url, timeout=5.0, sender=NUMBER)
    try:
        yield Stack(sandbox, api_url, gateway, gateway_url, sms)
    finally:
        await sms.aclose()


def outbound(text: str = "Your table is ready", **fields: Any) -> OutboundMessage:
    return OutboundMessage(
        id=fields.pop("id", "msg_1"), tenant_id="ten_1", to=CUSTOMER, body=text, config=None,
        **fields,
    )  # fmt: skip


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_it_declares_what_it_can_do() -> None:
    sms = TelnyxSms(API_KEY)
    assert isinstance(sms, Sender) and isinstance(sms, Lookup)
    assert (sms.name, sms.channel) == ("telnyx", "sms")
    webhooks = TelnyxWebhooks(None)
    assert isinstance(webhooks, WebhookSource)
    assert (webhooks.name, webhooks.kinds) == ("telnyx", frozenset({"events"}))


# -- sending ----------------------------------------------------------------------------------


async def test_send_posts_the_message_and_reads_telnyxs_answer(stack: Stack) -> None:
    url, _ = stack.hook("?mid=msg_1")

    result = await stack.sms.send(outbound("x" * 161, status_callback=url))

    [created] = stack.sandbox.messages
    assert (created["from"]["phone_number"], created["to"][0]["phone_number"]) == (
        NUMBER,
        CUSTOMER,
    )
    assert (created["text"], created["webhook_url"]) == ("x" * 161, url)
    assert result.provider == "telnyx"
    assert result.provider_message_id == created["id"]
    assert (result.provider_status, result.status) == ("queued", "sent")
    assert result.num_segments == 2
    assert (result.price, result.price_unit) == ("0.0140", "USD")


async def test_the_messages_own_sender_wins_over_the_default(stack: Stack) -> None:
    await stack.sms.send(outbound(sender="+15550108888"))
    await stack.sms.send(outbound())

    assert [m["from"]["phone_number"] for m in stack.sandbox.messages] == [
        "+15550108888",
        NUMBER,
    ]


async def test_a_messaging_profile_alone_sends_from_the_profiles_numbers(stack: Stack) -> None:
    provider = stack.provider(sender=None, messaging_profile_id=PROFILE)
    try:
        result = await provider.send(outbound())
    finally:
        await provider.aclose()

    [created] = stack.sandbox.messages
    assert created["id"] == result.provider_message_id
    assert created["from"]["phone_number"] == NUMBER  # the emulated pool's number


async def test_without_a_sender_or_profile_nothing_is_sent(stack: Stack) -> None:
    provider = stack.provider(sender=None)
    try:
        with pytest.raises(ProviderError) as refused:
            await provider.send(outbound())
    finally:
        await provider.aclose()

    assert refused.value.kind == "configuration"
    assert stack.sandbox.create_requests == 0


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind", "code", "suppress"),
    [
        ("429", "transient", "10011", None),
        ("500", "transient", "10007", None),
        ("40300", "permanent", "40300", "stop_keyword"),
        ("40310", "permanent", "40310", None),
        ("40305", "configuration", "40305", None),
    ],
)
async def test_each_refusal_is_classified(
    stack: Stack, fault: str, kind: str, code: str, suppress: str | None
) -> None:
    stack.sandbox.add_fault(fault)

    with pytest.raises(ProviderError) as refused:
        await stack.sms.send(outbound())

    assert (refused.value.kind, refused.value.code, refused.value.suppress) == (
        kind,
        code,
        suppress,
    )
    assert stack.sandbox.messages == []


async def test_a_rate_limit_says_when_to_come_back(stack: Stack) -> None:
    stack.sandbox.retry_after = 4
    stack.sandbox.add_fault("429")

    with pytest.raises(ProviderError) as limited:
        await stack.sms.send(outbound())

    assert limited.value.retry_after == 4.0


async def test_a_wrong_api_key_is_a_configuration_error(stack: Stack) -> None:
    provider = stack.provider(api_key="not-the-key")
    try:
        with pytest.raises(ProviderError) as refused:
            await provider.send(outbound())
        with pytest.raises(ProviderError) as unread:
            await provider.fetch(str(uuid.uuid4()))
    finally:
        await provider.aclose()

    assert (refused.value.kind, refused.value.code) == ("configuration", "10009")
    assert unread.value.kind == "configuration"
    assert stack.sandbox.messages == []


async def test_a_base_url_without_telnyxs_api_is_a_configuration_error(stack: Stack) -> None:
    provider = TelnyxSms(API_KEY, f"{stack.api_url}/elsewhere", sender=NUMBER)
    try:
        with pytest.raises(ProviderError) as refused:
            await provider.send(outbound())
    finally:
        await provider.aclose()

    assert refused.value.kind == "configuration"
    assert stack.sandbox.create_requests == 0


async def test_a_lost_answer_is_an_unknown_outcome_not_a_retry(stack: Stack) -> None:
    stack.sandbox.add_fault("hang")
    provider = stack.provider(timeout=0.3)
    try:
        with pytest.raises(ProviderError) as lost:
            await provider.send(outbound())
    finally:
        await provider.aclose()

    assert lost.value.kind == "unknown"
    assert len(stack.sandbox.messages) == 1  # Telnyx took it: a retry would send it twice


async def test_an_unreachable_telnyx_is_transient() -> None:
    provider = TelnyxSms(API_KEY, f"http://127.0.0.1:{free_port()}", sender=NUMBER)
    try:
        with pytest.raises(ProviderError) as unreachable:
            await provider.send(outbound())
    finally:
        await provider.aclose()

    assert unreachable.value.kind == "transient"


async def test_find_sent_admits_it_cannot_tell(stack: Stack) -> None:
    await stack.sms.send(outbound())

    with pytest.raises(ProviderError) as cannot:
        await stack.sms.find_sent(CUSTOMER, NUMBER, datetime.now(UTC))

    assert cannot.value.kind == "unknown"


# -- reading a message back -------------------------------------------------------------------


async def test_fetch_reads_the_final_status_and_cost(stack: Stack) -> None:
    sent = await stack.sms.send(outbound())
    await stack.sandbox.wait_for_status(sent.provider_message_id, "delivered")

    found = await stack.sms.fetch(sent.provider_message_id)

    assert found.provider_message_id == sent.provider_message_id
    assert (found.status, found.body, found.num_segments) == ("delivered", outbound().body, 1)
    assert (found.price, found.price_unit, found.error_code) == ("0.0070", "USD", None)
    assert found.created is not None and found.created.tzinfo is not None
    report = stack.sms.report(found, "poll")
    assert report is not None
    assert (report.status, report.provider_status, report.source) == (
        "delivered",
        "delivered",
        "poll",
    )
    assert (report.price, report.provider) == ("0.0070", "telnyx")


async def test_fetch_of_a_failed_delivery_reports_it_undelivered(stack: Stack) -> None:
    stack.sandbox.add_fault("40001")
    sent = await stack.sms.send(outbound())
    await stack.sandbox.wait_for_status(sent.provider_message_id, "delivery_failed")

    found = await stack.sms.fetch(sent.provider_message_id)
    report = stack.sms.report(found, "poll")

    assert (found.status, found.error_code) == ("delivery_failed", "40001")
    assert report is not None
    assert (report.status, report.error_code) == ("undelivered", "40001")
    assert report.error_reason == "landline or non-routable number"


async def test_fetch_of_an_unknown_message_is_permanent(stack: Stack) -> None:
    with pytest.raises(ProviderError) as missing:
        await stack.sms.fetch(str(uuid.uuid4()))

    assert missing.value.kind == "permanent"


def test_a_status_we_do_not_know_is_no_report() -> None:
    found = ProviderMessage(provider_message_id="x", status="webhook_delivered")
    assert TelnyxSms(API_KEY).report(found, "poll") is None


# -- webhooks ---------------------------------------------------------------------------------


async def test_delivery_webhooks_become_status_reports(stack: Stack) -> None:
    url, tag = stack.hook("?mid=msg_42")
    sent = await stack.sms.send(outbound(status_callback=url))

    await eventually(lambda: len(stack.gateway.events[tag]) == 2)

    assert stack.gateway.rejected[tag] == []
    reports = [events.statuses[0] for events in stack.gateway.events[tag]]
    assert [(r.status, r.provider_status) for r in reports] == [
        ("sent", "sent"),
        ("delivered", "delivered"),
    ]
    for report in reports:
        assert (report.source, report.provider) == ("telnyx", "telnyx")
        assert report.provider_message_id == sent.provider_message_id
        assert report.message_id == "msg_42"
        assert report.at is not None
        assert report.payload["data"]["payload"]["id"] == sent.provider_message_id
    assert (reports[1].price, reports[1].price_unit) == ("0.0070", "USD")
    assert all(events.reply.status == 204 for events in stack.gateway.events[tag])


async def test_a_failed_delivery_webhook_carries_the_carriers_error(stack: Stack) -> None:
    url, tag = stack.hook()
    stack.sandbox.add_fault("40001")
    await stack.sms.send(outbound(status_callback=url))

    await eventually(lambda: len(stack.gateway.events[tag]) == 2)

    final = stack.gateway.events[tag][1].statuses[0]
    assert (final.status, final.provider_status) == ("undelivered", "delivery_failed")
    assert (final.error_code, final.error_reason) == ("40001", "landline or non-routable number")
    assert final.message_id is None  # the URL named no message of ours


async def test_an_inbound_message_is_parsed(stack: Stack) -> None:
    url, tag = stack.hook()
    async with httpx.AsyncClient(timeout=5) as client:
        await client.post(
            f"{stack.api_url}/_sandbox/inbound",
            json={"from": CUSTOMER, "text": "Oui, merci", "url": url},
        )

    await eventually(lambda: len(stack.gateway.events[tag]) == 1)

    events = stack.gateway.events[tag][0]
    assert events.statuses == []
    [message] = events.inbound
    assert (message.channel, message.provider) == ("sms", "telnyx")
    assert (message.from_address, message.to_address, message.body) == (
        CUSTOMER,
        NUMBER,
        "Oui, merci",
    )
    assert uuid.UUID(message.provider_message_id)


def signed(
    data: dict[str, Any], key: Ed25519PrivateKey, *, at: int | None = None
) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"data": data, "meta": {"attempt": 1, "delivered_to": "x"}}).encode()
    stamp = str(int(time.time()) if at is None else at)
    return {"telnyx-signature-ed25519": sign(key, stamp, body), "telnyx-timestamp": stamp}, body


@pytest.fixture
def account() -> tuple[Ed25519PrivateKey, TelnyxWebhooks]:
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    return key, TelnyxWebhooks(public)


def test_a_genuine_webhook_passes(account: tuple[Ed25519PrivateKey, TelnyxWebhooks]) -> None:
    key, webhooks = account
    headers, body = signed(inbound_event(CUSTOMER, NUMBER, "hi"), key)

    webhooks.verify(
        "events", webhook_request("https://gw.test/webhooks/telnyx/events", headers, body)
    )


@pytest.mark.parametrize(
    "forgery",
    [
        "unsigned",
        "no timestamp",
        "tampered body",
        "another account's key",
        "five minutes old",
        "from the future",
        "timestamp changed",
        "signature not base64",
    ],
)
def test_a_forged_stale_or_unsigned_webhook_is_rejected(
    account: tuple[Ed25519PrivateKey, TelnyxWebhooks], forgery: str
) -> None:
    key, webhooks = account
    data = inbound_event(CUSTOMER, NUMBER, "hi")
    now = int(time.time())
    headers, body = signed(data, key)
    if forgery == "unsigned":
        headers = {}
    elif forgery == "no timestamp":
        del headers["telnyx-timestamp"]
    elif forgery == "tampered body":
        body = body.replace(b'"hi"', b'"STOP"')
    elif forgery == "another account's key":
        headers, body = signed(data, Ed25519PrivateKey.generate())
    elif forgery == "five minutes old":
        headers, body = signed(data, key, at=now - 301)
    elif forgery == "from the future":
        headers, body = signed(data, key, at=now + 301)
    elif forgery == "timestamp changed":
        headers["telnyx-timestamp"] = str(now - 1)
    else:
        headers["telnyx-signature-ed25519"] = "not/base64!"

    with pytest.raises(WebhookRejected):
        webhooks.verify("events", webhook_request("https://gw.test/x", headers, body))


def test_without_a_public_key_every_webhook_is_rejected() -> None:
    key = Ed25519PrivateKey.generate()
    headers, body = signed(inbound_event(CUSTOMER, NUMBER, "hi"), key)

    with pytest.raises(WebhookRejected):
        TelnyxWebhooks(None).verify("events", webhook_request("https://gw.test/x", headers, body))


@pytest.mark.parametrize("key", ["not base64 at all!", base64.b64encode(b"short").decode()])
def test_an_unreadable_public_key_fails_at_start_up(key: str) -> None:
    with pytest.raises(ValueError):
        TelnyxWebhooks(key)


async def test_our_message_id_comes_from_the_signed_body_not_the_url(
    stack: Stack, account: tuple[Ed25519PrivateKey, TelnyxWebhooks]
) -> None:
    """Telnyx signs the body, not the URL: a genuine webhook replayed to a URL naming
    another message must still speak of the message it was about."""
    url, tag = stack.hook("?mid=msg_ours")
    await stack.sms.send(outbound(status_callback=url))
    await eventually(lambda: len(stack.gateway.events[tag]) == 2)
    genuine = stack.gateway.events[tag][1].statuses[0].payload

    replay_url, replay_tag = stack.hook("?mid=msg_victim")
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await post_signed_event(
            client, replay_url, genuine["data"], stack.sandbox.private_key
        )

    assert answer.status_code == 204
    [events] = stack.gateway.events[replay_tag]
    assert events.statuses[0].message_id == "msg_ours"


def test_an_unreadable_body_is_rejected_and_other_events_are_ignored(
    account: tuple[Ed25519PrivateKey, TelnyxWebhooks],
) -> None:
    _, webhooks = account
    with pytest.raises(WebhookRejected):
        webhooks.parse("events", webhook_request("https://gw.test/x", {}, b"not json"))

    other = json.dumps({"data": {"event_type": "call.initiated", "payload": {}}}).encode()
    events = webhooks.parse("events", webhook_request("https://gw.test/x", {}, other))
    assert (events.statuses, events.inbound) == ([], [])
