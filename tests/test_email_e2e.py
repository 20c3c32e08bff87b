from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.sandbox.smtp_server import SmtpSandbox
from tests.stack import Stack, eventually, running_stack

USER, PASSWORD = "agent@acme.example", "smtp-password-0001"


@pytest.fixture
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(username=USER, password=PASSWORD, tls_mode="starttls") as server:
        yield server


@pytest.fixture
def stack(tmp_path: Path, smtp: SmtpSandbox) -> Iterator[Stack]:
    with running_stack(
        tmp_path, SMTP_CA_FILE=str(smtp.cert_path), SMTP_ALLOW_PRIVATE_HOSTS="true"
    ) as running:
        yield running


async def email_tenant(
    stack: Stack, http: httpx.AsyncClient, smtp: SmtpSandbox, password: str = PASSWORD
) -> dict[str, str]:
    key = await stack.tenant(http, "acme", channels=())
    config = {
        "host": "localhost",
        "port": smtp.port,
        "security": "starttls",
        "username": USER,
        "password": password,
        "from_email": USER,
        "from_name": "Sara — Acme",
        "reply_to": "contact@acme.example",
    }
    assert (
        await http.post("/api/channels/email/config", json=config, headers=key)
    ).status_code == 200
    assert (
        await http.post("/api/channels/email/toggle", json={"enabled": True}, headers=key)
    ).status_code == 200
    return key


async def send(http: httpx.AsyncClient, key: dict[str, str], **extra: Any) -> str:
    body = {
        "to": "client@example.org",
        "subject": "Votre rendez-vous",
        "text": "À demain 10h.",
        "html": "<p>À demain <b>10h</b>.</p>",
        **extra,
    }
    response = await http.post("/api/channels/email/send", json=body, headers=key)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def settled(http: httpx.AsyncClient, key: dict[str, str], mid: str) -> Any:
    async def check() -> Any:
        found = (await http.get(f"/api/messages/{mid}", headers=key)).json()
        return found if found["status"] in ("sent", "failed") else None

    return await eventually(check)


async def test_email_is_sent_through_the_tenants_server(stack: Stack, smtp: SmtpSandbox) -> None:
    async with stack.client() as http:
        key = await email_tenant(stack, http, smtp)
        done = await settled(http, key, await send(http, key))
    assert done["status"] == "sent"
    [received] = smtp.messages
    message = received.message
    assert received.username == USER and received.encrypted
    assert message["Subject"] == "Votre rendez-vous"
    assert message["Reply-To"] == "contact@acme.example"
    assert "Sara" in message["From"] and USER in message["From"]
    assert message["Message-ID"] == done["provider_message_id"]
    assert message.get_body(("plain",)).get_content().strip() == "À demain 10h."
    assert "<b>10h</b>" in message.get_body(("html",)).get_content()


async def test_transient_smtp_reply_is_retried(stack: Stack, smtp: SmtpSandbox) -> None:
    smtp.fail_next("data", 451, "4.3.0 Try again later")
    async with stack.client() as http:
        key = await email_tenant(stack, http, smtp)
        done = await settled(http, key, await send(http, key))
    assert done["status"] == "sent" and done["attempts"] == 2
    assert len(smtp.messages) == 1


async def test_permanent_rejection_fails_and_suppresses(stack: Stack, smtp: SmtpSandbox) -> None:
    smtp.reject_recipient("client@example.org", 550, "5.1.1 No such user")
    async with stack.client() as http:
        key = await email_tenant(stack, http, smtp)
        done = await settled(http, key, await send(http, key))
        assert done["status"] == "failed" and done["error_code"] == "550"
        again = await http.post(
            "/api/channels/email/send",
            headers=key,
            json={"to": "client@example.org", "subject": "s", "text": "t"},
        )
    assert again.status_code == 409
    assert again.json()["error"]["details"]["reason"] == "hard_bounce"


async def test_authentication_failure_fails_and_shows_as_last_error(
    stack: Stack, smtp: SmtpSandbox
) -> None:
    async with stack.client() as http:
        key = await email_tenant(stack, http, smtp, password="not-the-password")
        done = await settled(http, key, await send(http, key))
        config = (await http.get("/api/channels/email/config", headers=key)).json()
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["failure_reason"].startswith("authentication failed")
    assert config["last_error"].startswith("authentication failed")
    assert "not-the-password" not in str(done) and "not-the-password" not in str(config)
    assert smtp.messages == []
