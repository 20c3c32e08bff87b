"""ALERT_WEBHOOK_URL: a real HTTP receiver on loopback gets each new and each resolved alert
as a JSON POST whose signature it verifies the way a receiver would; a 500 is retried after
the backoff, a receiver that keeps failing is given up on after ALERT_WEBHOOK_MAX_ATTEMPTS
with the alert marked, and raises the webhook_failures alert itself; a sender that dies
holding a delivery leaves it to another after the lease; two senders never both post one."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.ids import iso
from gateway.services.alert_webhook import LEASE, AlertWebhook
from gateway.store import alerts as store
from tests.alert_rows import NOW, add_messages
from tests.conftest import Api, running_api

SECRET = "alert-webhook-secret-0123456789"


@dataclass
class Receiver:
    """What the alert receiver got, and the statuses it answers (then 200)."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verified(self) -> list[dict[str, Any]]:
        """Every body received, each signature checked as a receiver would."""
        bodies = []
        for headers, raw in self.posts:
            timestamp = headers["x-gateway-timestamp"]
            expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
            given = headers["x-gateway-signature"]
            assert hmac.compare_digest(given, "sha256=" + expected.hexdigest())
            assert abs(time.time() - int(timestamp)) < 300, "a fresh timestamp"
            bodies.append(json.loads(raw))
        return bodies


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            with got.lock:
                got.posts.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                status = got.answers.pop(0) if got.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def api(make_settings: Any, receiver: Receiver) -> AsyncIterator[Api]:
    settings = make_settings(
        ALERT_WEBHOOK_URL=receiver.url,
        ALERT_WEBHOOK_SECRET=SECRET,
        ALERT_WEBHOOK_MAX_ATTEMPTS="3",
        ALERT_WEBHOOK_BACKOFF_SECONDS="30",
    )
    async with running_api(settings) as running:
        yield running


async def failing_tenant(api: Api) -> str:
    """A tenant whose failure rate over 24 h is 25 %: the evaluation at NOW raises alerts
    for it and overall."""
    tenant, _ = await api.create_tenant("acme")
    await add_messages(api.gateway, tenant["id"], 15)
    await add_messages(api.gateway, tenant["id"], 5, status="failed")
    return str(tenant["id"])


async def listed(api: Api) -> dict[str | None, dict[str, Any]]:
    response = await api.client.get("/admin/alerts", headers=api.admin)
    return {a["tenant_id"]: a for a in response.json()["alerts"] if a["rule"] != "webhook_failures"}


async def test_each_new_and_resolved_alert_is_posted_signed(api: Api, receiver: Receiver) -> None:
    acme = await failing_tenant(api)
    await api.gateway.alerts.evaluate(NOW)
    assert (await listed(api))[acme]["notification"] == "pending"
    assert await api.gateway.alert_webhook.deliver_due(NOW) == 2
    fired = {b["alert"]["tenant_id"]: b for b in receiver.verified()}
    assert set(fired) == {acme, None}
    assert fired[acme]["event"] == "alert.fired"
    assert fired[acme]["alert"]["rule"] == "failure_rate_24h"
    assert fired[acme]["alert"]["value"] == 25.0
    assert {h["x-gateway-event"] for h, _ in receiver.posts} == {"alert.fired"}
    assert (await listed(api))[acme]["notification"] == "delivered"

    # evaluated again while it holds: nothing new to post
    await api.gateway.alerts.evaluate(NOW)
    assert await api.gateway.alert_webhook.deliver_due(NOW) == 0

    await add_messages(api.gateway, acme, 200)  # 5 of 220: resolved
    await api.gateway.alerts.evaluate(NOW)
    assert await api.gateway.alert_webhook.deliver_due(NOW) == 2
    resolved = [b for b in receiver.verified() if b["event"] == "alert.resolved"]
    assert {b["alert"]["tenant_id"] for b in resolved} == {acme, None}
    assert all(b["alert"]["resolved_at"] is not None for b in resolved)


async def test_a_tampered_body_fails_the_receivers_check(api: Api, receiver: Receiver) -> None:
    await failing_tenant(api)
    await api.gateway.alerts.evaluate(NOW)
    await api.gateway.alert_webhook.deliver_due(NOW)
    headers, raw = receiver.posts[0]
    tampered = raw.replace(b"alert.fired", b"alert.resolved")
    assert tampered != raw
    receiver.posts[0] = (headers, tampered)
    with pytest.raises(AssertionError):
        receiver.verified()


async def test_a_500_is_retried_after_the_backoff(api: Api, receiver: Receiver) -> None:
    acme = await failing_tenant(api)
    await api.gateway.alerts.evaluate(NOW)
    receiver.answers = [500, 500]
    assert await api.gateway.alert_webhook.deliver_due(NOW) == 2
    assert (await listed(api))[acme]["notification"] == "pending"
    # not due again before the backoff (30 s)
    assert await api.gateway.alert_webhook.deliver_due(NOW + timedelta(seconds=29)) == 0
    assert await api.gateway.alert_webhook.deliver_due(NOW + timedelta(seconds=31)) == 2
    assert (await listed(api))[acme]["notification"] == "delivered"
    deliveries = [h["x-gateway-delivery"] for h, _ in receiver.posts]
    assert len(deliveries) == 4 and len(set(deliveries)) == 2, "a retry names its delivery"
    assert len(receiver.verified()) == 4


async def test_given_up_after_the_last_attempt_with_the_alert_marked(
    api: Api, receiver: Receiver
) -> None:
    acme = await failing_tenant(api)
    await api.gateway.alerts.evaluate(NOW)
    receiver.answers = [500] * 100
    when = NOW
    for backoff in (30, 60, 120):  # doubling; the third attempt is the last
        assert await api.gateway.alert_webhook.deliver_due(when) == 2
        when += timedelta(seconds=backoff + 1)
    assert await api.gateway.alert_webhook.deliver_due(when + timedelta(days=1)) == 0
    assert len(receiver.posts) == 6
    assert (await listed(api))[acme]["notification"] == "failed"
    rows = await store.deliveries_of(api.gateway.db, (await listed(api))[acme]["id"])
    assert [(r["status"], r["attempts"], r["last_error"]) for r in rows] == [
        ("failed", 3, "HTTP 500")
    ]

    # six failed posts in a row: the alert webhook itself is failing
    await api.gateway.alerts.evaluate(NOW)
    response = await api.client.get("/admin/alerts", headers=api.admin)
    failing = [a for a in response.json()["alerts"] if a["rule"] == "webhook_failures"]
    assert [(a["subject"], a["value"]) for a in failing] == [("out:alert_webhook", 6.0)]


async def test_an_unreachable_receiver_is_retried(api: Api, receiver: Receiver) -> None:
    acme = await failing_tenant(api)
    await api.gateway.alerts.evaluate(NOW)
    good = receiver.url
    api.gateway.alert_webhook.url = "http://127.0.0.1:9/alerts"  # nothing listens there
    assert await api.gateway.alert_webhook.deliver_due(NOW) == 2
    api.gateway.alert_webhook.url = good
    assert await api.gateway.alert_webhook.deliver_due(NOW + timedelta(seconds=31)) == 2
    assert len(receiver.verified()) == 2
    assert (await listed(api))[acme]["notification"] == "delivered"


async def test_a_sender_that_died_holding_a_delivery_leaves_it_to_another(
    api: Api, receiver: Receiver
) -> None:
    await failing_tenant(api)
    await api.gateway.alerts.evaluate(NOW)
    # an instance claims both deliveries and dies before posting them
    claimed = await api.gateway.db.write_fn(
        lambda conn: store.claim_deliveries(conn, iso(NOW), iso(NOW + LEASE), "clm_dead", 20)
    )
    assert len(claimed) == 2
    assert await api.gateway.alert_webhook.deliver_due(NOW + timedelta(seconds=1)) == 0
    assert await api.gateway.alert_webhook.deliver_due(NOW + LEASE + timedelta(seconds=1)) == 2
    assert len(receiver.verified()) == 2


async def test_two_senders_at_once_post_each_alert_once(api: Api, receiver: Receiver) -> None:
    for n in range(6):  # seven alerts: the failure rate of six tenants, and overall
        other, _ = await api.create_tenant(f"t{n}")
        await add_messages(api.gateway, other["id"], 20, status="failed")
    await api.gateway.alerts.evaluate(NOW)
    first = api.gateway.alert_webhook
    second = AlertWebhook(api.gateway.db, receiver.url, SECRET)
    try:
        counts = await asyncio.gather(*(s.deliver_due(NOW) for s in (first, second, first)))
    finally:
        await second.aclose()
    assert sum(counts) == 7
    bodies = receiver.verified()
    assert len(bodies) == 7
    assert len({b["alert"]["id"] for b in bodies}) == 7


async def test_the_url_needs_a_secret(make_settings: Any) -> None:
    with pytest.raises(ConfigError, match="ALERT_WEBHOOK_SECRET"):
        async with running_api(make_settings(ALERT_WEBHOOK_URL="http://127.0.0.1:9/")):
            pass


@pytest.mark.parametrize(
    "name, value",
    [
        ("ALERT_WEBHOOK_URL", "not a url"),
        ("ALERT_WEBHOOK_MAX_ATTEMPTS", "0"),
        ("ALERT_WEBHOOK_BACKOFF_SECONDS", "-1"),
        ("ALERT_EXPENSIVE_SEGMENT_EUR", "-0.1"),
        ("ALERT_MIN_MESSAGES", "many"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_setting(
    make_settings: Any, name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        make_settings(**{name: value})
