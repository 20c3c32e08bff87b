from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest

from gateway.sandbox.smtp_server import SmtpSandbox, TlsMode


@pytest.fixture
def starttls() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as sandbox:
        yield sandbox


def _message(to: str = "alice@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Gateway <noreply@gateway.test>"
    message["To"] = to
    message["Reply-To"] = "support@gateway.test"
    message["Subject"] = "Your appointment on Tuesday"
    message.set_content("See you on Tuesday at 10:00.")
    message.add_alternative("<p>See you on <b>Tuesday</b> at 10:00.</p>", subtype="html")
    return message


async def _send(
    sandbox: SmtpSandbox, message: EmailMessage | None = None, **options: Any
) -> dict[str, aiosmtplib.SMTPResponse]:
    defaults: dict[str, Any] = {"hostname": sandbox.host, "local_hostname": "localhost"}
    if sandbox.tls_mode == "starttls":
        defaults.update(start_tls=True, tls_context=sandbox.client_tls_context())
    elif sandbox.tls_mode == "tls":
        defaults.update(use_tls=True, tls_context=sandbox.client_tls_context())
    if sandbox.auth_required:
        defaults.update(username=sandbox.username, password=sandbox.password)
    # The test owns the socket so it can wait until the client has really let go of it:
    # asyncio completes a TLS shutdown a few loop turns after close(), and an event loop torn
    # down before then leaves the transport to the garbage collector, which warns.
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (sandbox.host, sandbox.port))
        errors, _ = await aiosmtplib.send(
            message or _message(), sock=sock, timeout=10, **(defaults | options)
        )
    finally:
        await _closed(sock)
    return errors


async def _closed(sock: socket.socket) -> None:
    for _ in range(5000):
        if sock.fileno() == -1:
            return
        await asyncio.sleep(0.001)
    sock.close()


async def test_starttls_with_auth_delivers_the_message(starttls: SmtpSandbox) -> None:
    await _send(starttls)

    [received] = starttls.messages
    assert received.mail_from == "noreply@gateway.test"
    assert received.rcpt_tos == ("alice@example.com",)
    assert received.username == "user"
    assert received.encrypted
    assert starttls.auth_attempts == [("user", True)]


async def test_received_message_keeps_headers_and_both_bodies(starttls: SmtpSandbox) -> None:
    await _send(starttls)

    message = starttls.messages[0].message
    assert message["Subject"] == "Your appointment on Tuesday"
    assert message["From"] == "Gateway <noreply@gateway.test>"
    assert message["Reply-To"] == "support@gateway.test"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == "See you on Tuesday at 10:00."
    assert html.get_content().strip() == "<p>See you on <b>Tuesday</b> at 10:00.</p>"


async def test_certificate_is_valid_for_localhost_by_path(starttls: SmtpSandbox) -> None:
    await _send(
        starttls, hostname="localhost", tls_context=None, cert_bundle=str(starttls.cert_path)
    )

    assert len(starttls.messages) == 1


async def test_implicit_tls_delivers_the_message() -> None:
    with SmtpSandbox(tls_mode="tls") as sandbox:
        await _send(sandbox)
        await _send(sandbox, tls_context=None, validate_certs=False)

        assert [m.encrypted for m in sandbox.messages] == [True, True]
        assert [m.username for m in sandbox.messages] == ["user", "user"]


async def test_plain_mode_with_auth_delivers_the_message() -> None:
    with SmtpSandbox(tls_mode="none") as sandbox:
        await _send(sandbox)

        [received] = sandbox.messages
        assert received.username == "user"
        assert not received.encrypted


async def test_without_credentials_auth_is_optional() -> None:
    with SmtpSandbox(tls_mode="none", username=None, password=None) as sandbox:
        await _send(sandbox)

        assert sandbox.messages[0].username is None
        with pytest.raises(RuntimeError):
            _ = sandbox.cert_path


async def test_wrong_password_is_refused_with_535(starttls: SmtpSandbox) -> None:
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        await _send(starttls, password="wrong")

    assert refused.value.code == 535
    assert starttls.messages == []
    assert starttls.auth_attempts
    assert all(attempt == ("user", False) for attempt in starttls.auth_attempts)


@pytest.mark.parametrize("tls_mode", ["starttls", "tls", "none"])
async def test_mail_without_auth_is_refused(tls_mode: TlsMode) -> None:
    with SmtpSandbox(tls_mode=tls_mode) as sandbox:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await _send(sandbox, username=None, password=None)

        assert refused.value.code == 530
        assert sandbox.messages == []


async def test_auth_before_starttls_is_refused(starttls: SmtpSandbox) -> None:
    token = base64.b64encode(b"\0user\0pass")
    async with aiosmtplib.SMTP(
        hostname=starttls.host, port=starttls.port, start_tls=False, local_hostname="localhost"
    ) as client:
        assert not client.supports_extension("auth")
        with pytest.raises(aiosmtplib.SMTPException):
            await client.login("user", "pass")
        response = await client.execute_command(b"AUTH", b"PLAIN", token)

    assert response.code == 538
    assert starttls.auth_attempts == []


@pytest.mark.parametrize(
    ("stage", "code", "error"),
    [
        ("mail", 451, aiosmtplib.SMTPSenderRefused),
        ("mail", 550, aiosmtplib.SMTPSenderRefused),
        ("rcpt", 451, aiosmtplib.SMTPRecipientsRefused),
        ("rcpt", 550, aiosmtplib.SMTPRecipientsRefused),
        ("data", 451, aiosmtplib.SMTPDataError),
        ("data", 554, aiosmtplib.SMTPDataError),
    ],
)
async def test_fail_next_gives_the_reply_once(
    starttls: SmtpSandbox, stage: Any, code: int, error: type[aiosmtplib.SMTPException]
) -> None:
    starttls.fail_next(stage, code, "sandbox says no")

    with pytest.raises(error) as failed:
        await _send(starttls)
    await _send(starttls)

    reply = failed.value
    if isinstance(reply, aiosmtplib.SMTPRecipientsRefused):
        [reply] = reply.recipients
    assert isinstance(reply, aiosmtplib.SMTPResponseException)
    assert (reply.code, reply.message) == (code, "sandbox says no")
    assert len(starttls.messages) == 1


async def test_fail_next_count_covers_that_many_transactions(starttls: SmtpSandbox) -> None:
    starttls.fail_next("data", 451, "try later", count=2)

    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPDataError):
            await _send(starttls)
    await _send(starttls)

    assert len(starttls.messages) == 1


async def test_rcpt_failure_covers_every_recipient_of_the_transaction(
    starttls: SmtpSandbox,
) -> None:
    starttls.fail_next("rcpt", 451, "greylisted")

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await _send(starttls, recipients=["a@example.com", "b@example.com"])

    assert [r.code for r in refused.value.recipients] == [451, 451]


async def test_rejected_recipient_is_left_out(starttls: SmtpSandbox) -> None:
    starttls.reject_recipient("Bob@Example.com", 550, "5.1.1 no such user")

    errors = await _send(starttls, recipients=["alice@example.com", "bob@example.com"])

    assert errors["bob@example.com"].code == 550
    assert errors["bob@example.com"].message == "5.1.1 no such user"
    assert starttls.messages[0].rcpt_tos == ("alice@example.com",)


async def test_only_rejected_recipients_refuse_the_message(starttls: SmtpSandbox) -> None:
    starttls.reject_recipient("bob@example.com", 550, "no such user")

    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await _send(starttls, recipients=["bob@example.com"])

    assert refused.value.recipients[0].code == 550
    assert starttls.messages == []


async def test_wait_for_messages_returns_once_they_arrive(starttls: SmtpSandbox) -> None:
    sending = asyncio.create_task(_send(starttls))

    received = await starttls.wait_for_messages(1, timeout=10)
    await sending

    assert received[0].rcpt_tos == ("alice@example.com",)


async def test_wait_for_messages_gives_up(starttls: SmtpSandbox) -> None:
    with pytest.raises(TimeoutError):
        await starttls.wait_for_messages(1, timeout=0.05)
    with pytest.raises(TimeoutError):
        starttls.wait_for_messages_blocking(1, timeout=0.05)


def test_certificate_is_removed_at_stop() -> None:
    sandbox = SmtpSandbox().start()
    cert_path = sandbox.cert_path
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")

    sandbox.stop()

    assert not cert_path.exists()


def test_failure_replies_must_be_4xx_or_5xx(starttls: SmtpSandbox) -> None:
    with pytest.raises(ValueError):
        starttls.fail_next("rcpt", 250, "fine")
    with pytest.raises(ValueError):
        starttls.reject_recipient("a@example.com", 550, "two\r\nlines")
