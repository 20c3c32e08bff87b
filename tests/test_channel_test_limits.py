"""`POST /api/channels/test` sends real, billed messages: it counts against the tenant's send
limit and has its own small limit per tenant and channel, answering 429 before anything is
written or sent. Checked over the real SMS path (uvicorn + the Twilio emulator)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import load_settings
from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.smtp_server import SmtpSandbox
from gateway.sandbox.twilio_api import TwilioSandbox
from gateway.services.channel_tests import TEST_TEXT
from tests.conftest import ADMIN_KEY
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, Stack, eventually, running_stack, stack_environ

CLIENT = "+33612345678"
SMTP_USER, SMTP_PASSWORD = "agent@acme.example", "smtp-password-0001"


@contextmanager
def stack_with_send_limit(tmp_path: Path, limit: int) -> Iterator[Stack]:
    """tests.stack.running_stack, with a TOML file whose send limit is `limit` per minute and
    no CHANNEL_TEST_RATE_LIMITER entry (so the built-in channel test limit applies)."""
    config = tmp_path / "wrangler_like.toml"
    config.write_text(
        'name = "limits"\n[[ratelimits]]\nname = "SEND_RATE_LIMITER"\nnamespace_id = "1"\n'
        f"simple = {{ limit = {limit}, period = 60 }}\n"
    )
    with ExitStack() as stack:
        twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.01)
        twilio_server = stack.enter_context(ServerThread(twilio.app))
        port = free_port()
        environ = stack_environ(tmp_path, port, twilio_server.base_url)
        app = create_app(load_settings(config, environ=environ))
        server = stack.enter_context(ServerThread(app, port=port))
        yield Stack(server.base_url, twilio, app, {"Authorization": f"Bearer {ADMIN_KEY}"})


async def channel_test(
    http: httpx.AsyncClient, key: dict[str, str], channel: str = "sms", to: str = CLIENT
) -> httpx.Response:
    return await http.post("/api/channels/test", json={"channel": channel, "to": to}, headers=key)


async def logged(http: httpx.AsyncClient, key: dict[str, str]) -> list[dict[str, Any]]:
    response = await http.get("/api/messages", headers=key)
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def channel_tests_at_twilio(stack: Stack) -> list[dict[str, Any]]:
    return [m for m in stack.twilio.messages if m["body"] == TEST_TEXT]


def assert_rate_limited(response: httpx.Response, message: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert message in error["message"]
    assert set(error["details"]) >= {"limit", "period"}


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(username=SMTP_USER, password=SMTP_PASSWORD, tls_mode="starttls") as server:
        yield server


@pytest.fixture
def stack(tmp_path: Path, smtp: SmtpSandbox) -> Iterator[Stack]:
    with running_stack(
        tmp_path, SMTP_CA_FILE=str(smtp.cert_path), SMTP_ALLOW_PRIVATE_HOSTS="true"
    ) as running:
        yield running


async def test_a_burst_of_sms_tests_is_cut_off_at_the_test_limit(stack: Stack) -> None:
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        answers = [await channel_test(http, key) for _ in range(8)]
        assert [r.status_code for r in answers[:5]] == [200] * 5
        assert all(r.json()["ok"] for r in answers[:5])
        for refused in answers[5:]:
            assert_rate_limited(refused, "channel tests")
        assert len(await logged(http, key)) == 5, "a refused test writes nothing"
    assert len(channel_tests_at_twilio(stack)) == 5, "a refused test sends nothing"


async def test_the_test_limit_is_per_tenant_and_per_channel(
    stack: Stack, smtp: SmtpSandbox
) -> None:
    async with stack.client() as http:
        acme = await stack.tenant(http, "acme")
        for _ in range(5):
            assert (await channel_test(http, acme)).status_code == 200
        assert (await channel_test(http, acme)).status_code == 429

        other = await stack.tenant(http, "other")
        assert (await channel_test(http, other)).status_code == 200

        email = {
            "host": "localhost",
            "port": smtp.port,
            "username": SMTP_USER,
            "password": SMTP_PASSWORD,
            "from_email": SMTP_USER,
        }
        saved = await http.post("/api/channels/email/config", json=email, headers=acme)
        assert saved.status_code == 200, saved.text
        response = await channel_test(http, acme, "email", "client@example.org")
        assert response.status_code == 200 and response.json()["ok"] is True
    assert len(smtp.messages) == 1


async def test_channel_tests_use_up_the_send_limit(tmp_path: Path) -> None:
    with stack_with_send_limit(tmp_path, 3) as stack:
        async with stack.client() as http:
            key = await stack.tenant(http, "acme")
            for _ in range(3):
                assert (await channel_test(http, key)).status_code == 200
            send = await http.post(
                "/api/channels/sms/send", json={"to": CLIENT, "body": "Bonjour"}, headers=key
            )
            assert_rate_limited(send, "requests")
        assert len(channel_tests_at_twilio(stack)) == 3
        assert [m for m in stack.twilio.messages if m["body"] == "Bonjour"] == []


async def test_sends_use_up_the_send_limit_for_channel_tests(tmp_path: Path) -> None:
    with stack_with_send_limit(tmp_path, 2) as stack:
        async with stack.client() as http:
            key = await stack.tenant(http, "acme")
            for n in range(2):
                sent = await http.post(
                    "/api/channels/sms/send", json={"to": CLIENT, "body": f"n{n}"}, headers=key
                )
                assert sent.status_code == 202, sent.text
            assert_rate_limited(await channel_test(http, key), "requests")
            await eventually(lambda: len(stack.twilio.messages) == 2)
            assert len(await logged(http, key)) == 2
        assert channel_tests_at_twilio(stack) == []


async def test_the_built_in_test_limit_applies_without_a_toml_entry(tmp_path: Path) -> None:
    with stack_with_send_limit(tmp_path, 100) as stack:
        async with stack.client() as http:
            key = await stack.tenant(http, "acme")
            codes = [(await channel_test(http, key)).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        assert len(channel_tests_at_twilio(stack)) == 5


async def test_a_national_number_is_read_in_the_tenants_region(stack: Stack) -> None:
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")  # Europe/Paris: France
        response = await channel_test(http, key, to="06 12 34 56 78")
        assert response.status_code == 200, response.text
        assert response.json()["to"] == CLIENT
    [sent] = channel_tests_at_twilio(stack)
    assert sent["to"] == CLIENT
