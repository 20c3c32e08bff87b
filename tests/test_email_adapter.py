from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from typing import Any, Literal

import pytest

from gateway.channel_models import EmailConfig
from gateway.net_guard import HostGuard
from gateway.providers.base import OutboundMessage, ProviderError
from gateway.providers.smtp.sender import SmtpSender
from gateway.sandbox.server import free_port
from gateway.sandbox.smtp_server import SmtpSandbox, TlsMode

# The sandboxes listen on loopback, which the strict host rule refuses.
LOOPBACK_OK = HostGuard(allow_private=True)


@pytest.fixture
def sandbox() -> Iterator[SmtpSandbox]:
    with SmtpSandbox() as running:
        yield running


def _config(sandbox: SmtpSandbox, **overrides: Any) -> EmailConfig:
    values: dict[str, Any] = {
        "host": sandbox.host,
        "port": sandbox.port,
        "security": sandbox.tls_mode,
        "username": "user",
        "password": "pass",
        "from_email": "noreply@acme-dental.example.com",
        "from_name": "Acme Dental",
        "reply_to": "desk@acme-dental.example.com",
    }
    return EmailConfig.model_validate(values | overrides)


def _message(config: EmailConfig, **overrides: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "id": "msg_01HZX3",
        "tenant_id": "t_acme",
        "to": "alice@example.com",
        "body": "See you on Tuesday at 10:00.",
        "html_body": "<p>See you on <b>Tuesday</b> at 10:00.</p>",
        "subject": "Your appointment on Tuesday",
        "config": config,
    }
    return OutboundMessage(**(values | overrides))


def _adapter(sandbox: SmtpSandbox) -> SmtpSender:
    return SmtpSender(ca_file=str(sandbox.cert_path), timeout=5, hosts=LOOPBACK_OK)


async def _refused(adapter: SmtpSender, message: OutboundMessage) -> ProviderError:
    with pytest.raises(ProviderError) as refused:
        await adapter.send(message)
    return refused.value


def _parts(received: EmailMessage) -> tuple[str | None, str | None]:
    plain = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    return (
        plain.get_content().strip() if plain is not None else None,
        html.get_content().strip() if html is not None else None,
    )


@pytest.mark.parametrize("tls_mode", ["starttls", "tls", "none"])
async def test_delivers_the_message_as_configured(tls_mode: TlsMode) -> None:
    with SmtpSandbox(tls_mode=tls_mode) as sandbox:
        adapter = SmtpSender(
            ca_file=str(sandbox.cert_path) if tls_mode != "none" else None,
            timeout=5,
            hosts=LOOPBACK_OK,
        )
        result = await adapter.send(_message(_config(sandbox)))
        await adapter.aclose()

        [received] = sandbox.messages
    mail = received.message
    assert result.provider == "smtp" and result.status == "sent"
    assert result.provider_status.startswith("250")
    assert received.username == "user"
    assert received.encrypted is (tls_mode != "none")
    assert received.mail_from == "noreply@acme-dental.example.com"
    assert received.rcpt_tos == ("alice@example.com",)
    assert mail["From"] == "Acme Dental <noreply@acme-dental.example.com>"
    assert mail["To"] == "alice@example.com"
    assert mail["Reply-To"] == "desk@acme-dental.example.com"
    assert mail["Subject"] == "Your appointment on Tuesday"
    assert mail["Date"] is not None
    assert mail["X-Gateway-Message-Id"] == "msg_01HZX3"
    assert mail["Message-ID"] == result.provider_message_id
    assert result.provider_message_id.endswith("@acme-dental.example.com>")
    assert mail.get_content_type() == "multipart/alternative"
    assert _parts(mail) == (
        "See you on Tuesday at 10:00.",
        "<p>See you on <b>Tuesday</b> at 10:00.</p>",
    )


async def test_text_only_message_with_accented_names(sandbox: SmtpSandbox) -> None:
    config = _config(sandbox, from_name="Zahnarztpraxis Müller", reply_to=None)
    message = _message(
        config,
        subject="Termin am Dienstag, bitte bestätigen",
        body="Bis Dienstag!",
        html_body=None,
    )

    first = await _adapter(sandbox).send(message)
    second = await _adapter(sandbox).send(message)

    mail = sandbox.messages[0].message
    assert mail["From"] == "Zahnarztpraxis Müller <noreply@acme-dental.example.com>"
    assert mail["Subject"] == "Termin am Dienstag, bitte bestätigen"
    assert "Reply-To" not in mail
    assert mail.get_content_type() == "text/plain"
    assert _parts(mail) == ("Bis Dienstag!", None)
    assert first.provider_message_id != second.provider_message_id


async def test_wrong_password_is_a_configuration_error(sandbox: SmtpSandbox) -> None:
    message = _message(_config(sandbox, password="wrong"))

    error = await _refused(_adapter(sandbox), message)

    assert error.kind == "configuration"
    assert error.reason.startswith("authentication failed")
    assert error.code == "535"
    assert sandbox.messages == []


async def test_server_requiring_auth_without_a_username_is_a_configuration_error(
    sandbox: SmtpSandbox,
) -> None:
    error = await _refused(_adapter(sandbox), _message(_config(sandbox, username=None)))

    assert (error.kind, error.code) == ("configuration", "530")


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_4xx_reply_is_transient_and_a_retry_gets_through(
    sandbox: SmtpSandbox, stage: Literal["rcpt", "data"]
) -> None:
    sandbox.fail_next(stage, 451, "4.3.0 try again later")
    adapter = _adapter(sandbox)
    message = _message(_config(sandbox))

    error = await _refused(adapter, message)
    await adapter.send(message)

    assert (error.kind, error.code, error.suppress) == ("transient", "451", None)
    assert "try again later" in error.reason
    assert len(sandbox.messages) == 1


@pytest.mark.parametrize(
    "refuse",
    [
        lambda s: s.reject_recipient("alice@example.com", 550, "5.1.1 no such user"),
        lambda s: s.fail_next("rcpt", 550, "mailbox unavailable"),
    ],
    ids=["enhanced-status", "plain"],
)
async def test_unknown_recipient_is_permanent_and_suppressed(
    sandbox: SmtpSandbox, refuse: Any
) -> None:
    refuse(sandbox)

    error = await _refused(_adapter(sandbox), _message(_config(sandbox)))

    assert (error.kind, error.code, error.suppress) == ("permanent", "550", "hard_bounce")
    assert sandbox.messages == []


async def test_policy_refusal_at_rcpt_does_not_suppress_the_recipient(
    sandbox: SmtpSandbox,
) -> None:
    sandbox.fail_next("rcpt", 550, "5.7.1 relaying denied")

    error = await _refused(_adapter(sandbox), _message(_config(sandbox)))

    assert (error.kind, error.code, error.suppress) == ("permanent", "550", None)


async def test_5xx_at_data_is_permanent(sandbox: SmtpSandbox) -> None:
    sandbox.fail_next("data", 554, "5.6.0 message rejected as spam")

    error = await _refused(_adapter(sandbox), _message(_config(sandbox)))

    assert (error.kind, error.code, error.suppress) == ("permanent", "554", None)
    assert "rejected as spam" in error.reason


async def test_closed_port_is_transient() -> None:
    config = EmailConfig(
        host="127.0.0.1", port=free_port(), security="none", from_email="noreply@example.com"
    )
    message = _message(config)

    error = await _refused(SmtpSender(timeout=5, hosts=LOOPBACK_OK), message)

    assert error.kind == "transient"
    assert error.code is None


@pytest.mark.parametrize(
    ("target", "field", "value"),
    [
        ("message", "subject", "Hello\r\nBcc: everyone@example.com"),
        ("message", "to", "alice@example.com\nBcc: everyone@example.com"),
        ("config", "from_name", "Acme\r\nBcc: everyone@example.com"),
        ("config", "reply_to", "desk@example.com\rBcc: everyone@example.com"),
        ("config", "from_email", "noreply@example.com\nBcc: everyone@example.com"),
    ],
)
async def test_line_break_in_a_header_is_refused_before_connecting(
    sandbox: SmtpSandbox, target: str, field: str, value: str
) -> None:
    config = _config(sandbox)
    if target == "config":
        # model_copy skips validation: the adapter must not rely on the API having checked
        config = config.model_copy(update={field: value})
        message = _message(config)
    else:
        message = _message(config, **{field: value})

    error = await _refused(_adapter(sandbox), message)

    assert error.kind == "permanent"
    assert sandbox.messages == []
    assert sandbox.auth_attempts == []


@pytest.mark.parametrize("tls_mode", ["starttls", "tls"])
async def test_untrusted_certificate_is_a_configuration_error(tls_mode: TlsMode) -> None:
    with SmtpSandbox(tls_mode=tls_mode) as sandbox:
        error = await _refused(SmtpSender(timeout=5, hosts=LOOPBACK_OK), _message(_config(sandbox)))

        assert error.kind == "configuration"
        assert "certificate" in error.reason
        assert sandbox.auth_attempts == [], "no password goes over an unverified connection"


@contextlib.asynccontextmanager
async def _vanishing_server(
    vanish: Literal["at-data", "after-content", "silent"],
) -> AsyncIterator[int]:
    """A bare SMTP server that stops answering at some point of the DATA step."""
    handlers: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        handlers.add(handler)
        try:
            writer.write(b"220 vanishing ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"DATA":
                    if vanish == "at-data":
                        return
                    writer.write(b"354 go ahead\r\n")
                    while await reader.readline() not in (b".\r\n", b""):
                        pass
                    if vanish == "after-content":
                        return
                    await reader.read()  # silent: say nothing until the client gives up
                    return
                writer.write(b"221 bye\r\n" if verb == b"QUIT" else b"250 ok\r\n")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        # Every connection is closed before the test's event loop goes away.
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


@pytest.mark.parametrize(
    ("vanish", "kind"),
    [("at-data", "transient"), ("after-content", "unknown"), ("silent", "unknown")],
)
async def test_lost_connection_is_unknown_only_once_the_content_went_out(
    vanish: Literal["at-data", "after-content", "silent"], kind: str
) -> None:
    async with _vanishing_server(vanish) as port:
        config = EmailConfig(
            host="127.0.0.1", port=port, security="none", from_email="noreply@example.com"
        )
        error = await _refused(SmtpSender(timeout=0.5, hosts=LOOPBACK_OK), _message(config))

    assert error.kind == kind
