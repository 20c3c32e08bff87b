"""SMS failover between Twilio and Telnyx, end to end over real loopback sockets: while the
primary's emulator fails, messages flow through the secondary; once it is healthy again it
takes its traffic back; every message reaches exactly one provider exactly once, and its
status, cost and callbacks follow the provider that sent it. An unknown outcome never fails
over."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import load_settings
from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.telnyx_api import TelnyxSandbox
from gateway.sandbox.twilio_api import TwilioSandbox
from gateway.services.failover import Failover
from tests.conftest import ACCOUNT_SID, ADMIN_KEY, AUTH_TOKEN, ROOT
from tests.stack import SHARED_NUMBER, eventually, stack_environ

TELNYX_KEY = "KEY_failover_test_0123456789"
TELNYX_NUMBER = "+33757005467"


@dataclass
class Both:
    url: str
    twilio: TwilioSandbox
    telnyx: TelnyxSandbox
    admin: dict[str, str]

    def bodies(self) -> Counter[str]:
        """What reached the providers, as (provider, text) counts."""
        found: Counter[str] = Counter()
        for message in self.twilio.messages:
            found[message["body"]] += 1
        for record in self.telnyx.messages:
            found[record["text"]] += 1
        return found


@contextmanager
def two_providers(tmp_path: Path, **extra: str) -> Iterator[Both]:
    with ExitStack() as stack:
        twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.01)
        telnyx = TelnyxSandbox(TELNYX_KEY, callback_delay=0.01, phone_number=TELNYX_NUMBER)
        twilio_url = stack.enter_context(ServerThread(twilio.app)).base_url
        telnyx_url = stack.enter_context(ServerThread(telnyx.app)).base_url
        port = free_port()
        environ = stack_environ(
            tmp_path,
            port,
            twilio_url,
            TELNYX_API_KEY=TELNYX_KEY,
            TELNYX_API_BASE=telnyx_url,
            TELNYX_PUBLIC_KEY=telnyx.public_key,
            TELNYX_PHONE_NUMBER=TELNYX_NUMBER,
            SMS_PROVIDERS="twilio,telnyx",
            **extra,
        )
        settings = load_settings(ROOT / "wrangler_like.toml", environ=environ)
        server = stack.enter_context(ServerThread(create_app(settings), port=port))
        yield Both(server.base_url, twilio, telnyx, {"Authorization": f"Bearer {ADMIN_KEY}"})


async def _tenant(http: httpx.AsyncClient, both: Both, slug: str) -> tuple[str, dict[str, str]]:
    created = await http.post(
        "/admin/tenants", json={"name": slug.title(), "slug": slug}, headers=both.admin
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}
    toggled = await http.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert toggled.status_code == 200, toggled.text
    return created.json()["tenant"]["id"], key


async def _send(http: httpx.AsyncClient, key: dict[str, str], body: str) -> str:
    response = await http.post(
        "/api/channels/sms/send", json={"to": "+33612345678", "body": body}, headers=key
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _message(http: httpx.AsyncClient, key: dict[str, str], mid: str) -> dict[str, Any]:
    response = await http.get(f"/api/messages/{mid}", headers=key)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _all_delivered(
    http: httpx.AsyncClient, key: dict[str, str], ids: list[str]
) -> list[dict[str, Any]] | None:
    rows = [await _message(http, key, mid) for mid in ids]
    return rows if all(r["status"] == "delivered" for r in rows) else None


async def test_messages_fail_over_to_telnyx_and_come_back_to_twilio(tmp_path: Path) -> None:
    with two_providers(tmp_path, SMS_FAILOVER_AFTER="2", SMS_CIRCUIT_SECONDS="1") as both:
        async with httpx.AsyncClient(base_url=both.url, timeout=10) as http:
            _, key = await _tenant(http, both, "acme")

            healthy = [await _send(http, key, f"before {i}") for i in range(3)]
            before = await eventually(lambda: _all_delivered(http, key, healthy))
            assert {r["provider"] for r in before} == {"twilio"}

            both.twilio.add_fault("500", 100_000)  # Twilio is down
            down = [await _send(http, key, f"during {i}") for i in range(8)]
            during = await eventually(lambda: _all_delivered(http, key, down), within=20)
            assert {r["provider"] for r in during} == {"telnyx"}
            # they were sent from Telnyx's number, and priced from Telnyx's own report
            assert {r["from"] for r in during} == {TELNYX_NUMBER}
            assert all(r["provider_cost"] is not None and r["margin"] is not None for r in during)

            both.twilio.clear_faults()  # healthy again: after the circuit time it is tried
            await asyncio.sleep(1.2)
            # one message tries Twilio (half-open; the others meanwhile still go to Telnyx)
            trial = await _send(http, key, "after 0")
            [tried] = await eventually(lambda: _all_delivered(http, key, [trial]), within=20)
            assert tried["provider"] == "twilio"
            back = [trial] + [await _send(http, key, f"after {i}") for i in range(1, 4)]
            after = await eventually(lambda: _all_delivered(http, key, back), within=20)
            assert {r["provider"] for r in after} == {"twilio"}
            assert {r["from"] for r in after} == {SHARED_NUMBER}

            # every message reached exactly one provider, exactly once
            sent = Counter(
                [f"before {i}" for i in range(3)]
                + [f"during {i}" for i in range(8)]
                + [f"after {i}" for i in range(4)]
            )
            assert both.bodies() == sent
            twilio_bodies = {m["body"] for m in both.twilio.messages}
            assert not any(body.startswith("during") for body in twilio_bodies)

            # the switch is on the message's record
            events = (await _message(http, key, down[0]))["events"]
            switched = [e for e in events if e["payload"].get("from_provider")]
            assert [e["payload"]["provider"] for e in switched] == ["telnyx"]

            metrics = (await http.get("/metrics", headers=both.admin)).text
            assert 'gateway_sms_failovers_total{from_provider="twilio",to_provider="telnyx"}' in (
                metrics
            )


async def test_a_lost_answer_never_fails_over(tmp_path: Path) -> None:
    with two_providers(
        tmp_path, SMS_FAILOVER_AFTER="1", SMS_CIRCUIT_SECONDS="30", PROVIDER_TIMEOUT_SECONDS="0.5"
    ) as both:
        both.twilio.hang_seconds = 2.0
        async with httpx.AsyncClient(base_url=both.url, timeout=10) as http:
            _, key = await _tenant(http, both, "acme")
            both.twilio.add_fault("hang", 1)  # Twilio takes it but its answer is lost
            mid = await _send(http, key, "the answer is lost")
            [row] = await eventually(lambda: _all_delivered(http, key, [mid]), within=20)
            assert row["provider"] == "twilio"
            assert both.bodies() == Counter({"the answer is lost": 1})
            assert both.telnyx.messages == []


async def test_a_tenant_can_be_given_its_own_provider_order(tmp_path: Path) -> None:
    with two_providers(tmp_path) as both:
        async with httpx.AsyncClient(base_url=both.url, timeout=10) as http:
            tenant_id, key = await _tenant(http, both, "acme")
            url = f"/admin/tenants/{tenant_id}/channels/sms/config"
            for bad, why in (
                (["nope"], "unknown SMS provider nope; known: "),
                (["twilio", "twilio"], "names a provider twice"),
                ("twilio", "list"),
                ([], "at least 1"),
                (["Twilio!"], "pattern"),
            ):
                refused = await http.put(url, json={"providers": bad}, headers=both.admin)
                assert refused.status_code == 422, refused.text
                error = refused.json()["error"]
                assert error["details"]["fields"][0]["field"].startswith("providers")
                assert why in error["details"]["fields"][0]["message"]
            # the tenant itself may not choose
            own = await http.put(
                "/api/channels/sms/config", json={"providers": ["telnyx"]}, headers=key
            )
            assert own.status_code == 422, own.text

            saved = await http.put(url, json={"providers": ["telnyx"]}, headers=both.admin)
            assert saved.status_code == 200, saved.text
            mid = await _send(http, key, "through telnyx")
            [row] = await eventually(lambda: _all_delivered(http, key, [mid]))
            assert (row["provider"], row["from"]) == ("telnyx", TELNYX_NUMBER)
            assert both.twilio.messages == []


def test_an_open_circuit_lets_one_trial_through_then_closes_on_success() -> None:
    now = [0.0]
    failover = Failover(after=2, open_seconds=10, clock=lambda: now[0])
    order = ["twilio", "telnyx"]
    assert failover.choose(order) == "twilio"
    assert failover.failed("twilio") is False  # once: still first
    assert failover.choose(order) == "twilio"
    assert failover.failed("twilio") is True  # twice in a row: open
    assert failover.choose(order) == "telnyx"
    now[0] = 11.0  # the circuit's time is over: one message tries twilio
    assert failover.choose(order) == "twilio"
    assert failover.choose(order) == "telnyx"  # while the trial is out
    failover.released("twilio")  # its outcome was unknown: the next message may try
    assert failover.choose(order) == "twilio"
    failover.succeeded("twilio")
    assert [failover.choose(order) for _ in range(3)] == ["twilio"] * 3


def test_a_failed_trial_opens_the_circuit_again() -> None:
    now = [0.0]
    failover = Failover(after=1, open_seconds=5, clock=lambda: now[0])
    order = ["twilio", "telnyx"]
    failover.failed("twilio")
    now[0] = 6.0
    assert failover.choose(order) == "twilio"
    assert failover.failed("twilio") is True
    assert failover.choose(order) == "telnyx"
    failover.failed("telnyx")  # both open: the one that reopens first
    assert failover.choose(order) == "twilio"


@pytest.mark.parametrize("value", ["twilio,nope", "twilio,,telnyx", "twilio,twilio"])
def test_a_bad_provider_list_stops_start_up(tmp_path: Path, value: str) -> None:
    from gateway.errors import ConfigError

    environ = stack_environ(tmp_path, free_port(), "http://127.0.0.1:9", SMS_PROVIDERS=value)
    with pytest.raises(ConfigError, match="SMS_PROVIDERS"):
        create_app(load_settings(ROOT / "wrangler_like.toml", environ=environ))


class _Configured:
    """Both providers configured, each with its own number."""

    numbers = {"twilio": SHARED_NUMBER, "telnyx": TELNYX_NUMBER}

    def sender(self, name: str) -> object | None:
        return object() if name in self.numbers else None

    def default_sender(self, name: str) -> str | None:
        return self.numbers.get(name)

    def names(self, channel: str) -> list[str]:
        return list(self.numbers)


def test_only_a_failure_before_the_provider_took_the_message_counts_against_it() -> None:
    from gateway.services.failover import SmsRouting

    routing = SmsRouting(_Configured(), ("twilio", "telnyx"), Failover(after=2))
    for outcome in ("unknown", "configuration", "unknown"):
        assert routing.record("twilio", outcome, {}) is None
    assert routing.choose({}) == "twilio"  # a lost answer says nothing of its health
    assert routing.record("twilio", "transient", {}) is None  # once: backoff, same provider
    assert routing.record("twilio", "permanent", {}) is None  # it answered: healthy again
    assert routing.record("twilio", "transient", {}) is None
    assert routing.record("twilio", "transient", {}) == 0.0  # twice in a row: next one, now
    assert routing.choose({}) == "telnyx"
    # a tenant whose only provider is down has nowhere else to go: the usual backoff
    only = {"providers": ["telnyx"]}
    routing.record("telnyx", "transient", only)
    assert routing.record("telnyx", "transient", only) is None


def test_the_tenants_sender_goes_with_its_first_provider() -> None:
    from gateway.services.failover import SmsRouting

    routing = SmsRouting(_Configured(), ("twilio", "telnyx"), Failover())
    tenant = {"sender": "+33939035799"}
    assert routing.sender("twilio", tenant) == "+33939035799"
    assert routing.sender("telnyx", tenant) == TELNYX_NUMBER
    reversed_order = {**tenant, "providers": ["telnyx", "twilio"]}
    assert routing.sender("telnyx", reversed_order) == "+33939035799"
    assert routing.sender("twilio", reversed_order) == SHARED_NUMBER
    assert routing.ready({}) and not routing.ready({"providers": ["nope"]})
