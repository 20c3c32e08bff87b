"""The tenant's own SMTP server (bring your own server), through aiosmtplib.

Error translation (DESIGN §8):

    transient      a 4xx reply at any stage; a connection refused, lost or timed out before
                   the message content went out
    permanent      a 5xx reply; one refusing the recipient's address at RCPT also asks for
                   the address to be suppressed (suppress="hard_bounce")
    configuration  535 authentication failed; 530/534/538; a TLS or certificate failure;
                   a server without STARTTLS or AUTH when the settings need them; a host or
                   port the host rule refuses (gateway.net_guard)
    unknown        the connection lost or timed out after the content went out and before
                   the final reply: the server may have accepted the message

Connections go through the host rule: the host is resolved once, every address is checked,
and the TCP connection is opened here to a checked address and handed to aiosmtplib as its
socket, while TLS still verifies the certificate against the host *name* (aiosmtplib takes
the server name from `hostname`, the socket from `sock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal

import aiosmtplib
from aiosmtplib.typing import Default

from gateway.channel_models import EmailConfig
from gateway.net_guard import HostGuard, HostRefused, HostUnresolved
from gateway.providers.base import OutboundMessage, ProviderError, SendResult

Stage = Literal["connect", "authenticate", "send"]

# Replies that say the tenant's settings are wrong (RFC 4954), not the message.
_CONFIGURATION_REPLIES = {
    530: "the SMTP server requires authentication: set a username and password",
    534: "the SMTP server refuses the offered authentication mechanism",
    538: "the SMTP server requires encryption before authentication",
}
# RFC 3463 enhanced status code at the start of a reply text, e.g. "5.1.1".
_ENHANCED_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})\b")
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


class SmtpClient(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when the message content has been handed to the connection:
    from then on a lost connection may hide a message the server accepted, so the send must
    not be repeated blindly."""

    content_sent = False

    def close(self) -> None:
        # Abort, not close: a TLS close waits for the server's close_notify, which would leave
        # the socket open after send() returned. Once QUIT is answered, or the session has
        # failed, there is nothing left to say.
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()
        super().close()

    # Overrides aiosmtplib's DATA step, keeping its signature (hence the timeout parameter).
    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109
    ) -> aiosmtplib.SMTPResponse:
        start = await self.execute_command(b"DATA", timeout=timeout)
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = self.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        content = message.encode("ascii") if isinstance(message, str) else message
        content = _LINE_ENDINGS.sub(b"\r\n", content)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        content = _LEADING_PERIOD.sub(b"..", content) + b".\r\n"
        try:
            protocol.write(content)
            self.content_sent = True
            reply = await protocol.read_response(
                timeout=self.timeout if timeout is Default.token else timeout
            )
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.close()
            raise
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


async def open_socket(
    host: str, port: int, guard: HostGuard, connect_timeout: float
) -> socket.socket:
    """A TCP connection to `host:port` that the host rule allows, made to one of the addresses
    the rule checked (the next in line when one refuses the connection)."""
    try:
        guard.check_port(port)
        addresses = await guard.addresses(host, connect_timeout)
    except HostRefused as exc:
        raise ProviderError(
            "configuration",
            f"the SMTP server cannot be used: {exc.field} {exc.reason}",
            code="host_refused",
        ) from None
    except HostUnresolved:
        raise ProviderError(
            "transient",
            f"could not connect to {host}:{port}: the host name does not resolve",
            code="host_unresolved",
        ) from None
    loop = asyncio.get_running_loop()
    failure: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # e.g. no IPv6 on this machine
            failure = exc
            continue
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (str(address), port)), connect_timeout)
        except BaseException as exc:  # the socket is ours until it is connected
            sock.close()
            if isinstance(exc, TimeoutError):
                failure = TimeoutError(f"no answer within {connect_timeout:g} s")
            elif isinstance(exc, OSError):
                failure = exc
            else:
                raise
            continue
        return sock
    assert failure is not None
    raise failure


def make_client(
    config: EmailConfig,
    sock: socket.socket,
    timeout: float,
    *,
    context: ssl.SSLContext | None = None,
    ca_file: str | None = None,
) -> SmtpClient:
    """A client on an already connected socket; `hostname` is then only the name TLS checks
    the certificate against."""
    assert config.host is not None
    if config.security == "none":
        context = None
    elif context is None:
        context = tls_context(ca_file)
    return SmtpClient(
        hostname=config.host,
        sock=sock,
        use_tls=config.security == "tls",
        start_tls=config.security == "starttls",
        tls_context=context,
        timeout=timeout,
    )


def _tls_failure(exc: BaseException) -> bool:
    # With implicit TLS aiosmtplib wraps the handshake error in SMTPConnectError.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__
    return False


def describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}".strip()
    return str(exc) or type(exc).__name__


def _is_hard_bounce(code: int, text: str) -> bool:
    """Whether a refusal at RCPT says the address itself is bad (RFC 3463 X.1.x), rather than
    a policy or mailbox-full problem for which suppressing the recipient would be wrong."""
    enhanced = _ENHANCED_STATUS.match(text)
    if enhanced is not None:
        # X.1.7 and X.1.8 are about the sender's address, not the recipient's.
        return enhanced[1] == "5" and enhanced[2] == "1" and enhanced[3] not in ("7", "8")
    return code in (550, 551, 553)


def _refusal(code: int, text: str, what: str, *, recipient: bool = False) -> ProviderError:
    reply = f"{code} {text}".strip()
    if code in _CONFIGURATION_REPLIES:
        return ProviderError(
            "configuration", f"{_CONFIGURATION_REPLIES[code]} ({reply})", code=str(code)
        )
    if code < 500:
        return ProviderError("transient", f"{what} (temporary): {reply}", code=str(code))
    return ProviderError(
        "permanent", f"{what}: {reply}", code=str(code),
        suppress="hard_bounce" if recipient and _is_hard_bounce(code, text) else None,
    )  # fmt: skip


def _translate(
    exc: Exception, stage: Stage, config: EmailConfig, content_sent: bool
) -> ProviderError:
    if _tls_failure(exc):
        return ProviderError("configuration", f"TLS with the SMTP server failed: {describe(exc)}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        if 400 <= exc.code < 500:
            return _refusal(exc.code, exc.message, "the SMTP server could not authenticate")
        return ProviderError(
            "configuration", f"authentication failed: {describe(exc)}", code=str(exc.code)
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        return _refusal(
            refused.code, refused.message, "the SMTP server refused the recipient", recipient=True
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        what = {
            aiosmtplib.SMTPSenderRefused: "the SMTP server refused the sender",
            aiosmtplib.SMTPDataError: "the SMTP server refused the message",
        }.get(type(exc), "the SMTP server refused the connection")
        return _refusal(exc.code, exc.message, what)
    if content_sent:
        return ProviderError(
            "unknown",
            "no reply from the SMTP server after the message was handed over; it may have "
            f"been accepted: {describe(exc)}",
        )
    if isinstance(exc, ValueError | aiosmtplib.SMTPNotSupported):
        # aiosmtplib refuses an address it cannot put on the wire, or a non-ASCII address
        # the server cannot take (no SMTPUTF8): no retry changes that.
        return ProviderError("permanent", f"the message cannot be sent: {describe(exc)}")
    if isinstance(exc, OSError | aiosmtplib.SMTPResponseException):
        # OSError covers refused connections, resets and (via TimeoutError) timeouts;
        # a response code below 400 is a reply aiosmtplib could not parse.
        if stage == "connect":
            where = f"{config.host}:{config.effective_port}"
            return ProviderError("transient", f"could not connect to {where}: {describe(exc)}")
        return ProviderError("transient", f"the SMTP connection failed: {describe(exc)}")
    # What is left is aiosmtplib's own refusal to go on, e.g. STARTTLS or AUTH not offered.
    return ProviderError("configuration", f"the SMTP server cannot be used: {describe(exc)}")


def _check_header(name: str, value: str | None) -> None:
    if value is not None and ("\r" in value or "\n" in value):
        raise ProviderError("permanent", f"the {name} contains a line break")


def compose(message: OutboundMessage, config: EmailConfig) -> EmailMessage:
    """The message as it goes on the wire; refuses header injection before any connection."""
    assert config.from_email is not None
    _check_header("recipient address", message.to)
    _check_header("subject", message.subject)
    _check_header("sender name", config.from_name)
    _check_header("sender address", config.from_email)
    _check_header("reply-to address", config.reply_to)
    _check_header("message id", message.id)
    domain = config.from_email.rpartition("@")[2]
    # An internationalised domain keeps its Unicode form: a Message-ID only has to be unique.
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    mail = EmailMessage()
    try:
        # Address, not formataddr, so an internationalised address does not raise.
        mail["From"] = Address(display_name=config.from_name or "", addr_spec=config.from_email)
        mail["To"] = message.to
        if config.reply_to:
            mail["Reply-To"] = config.reply_to
        if message.subject is not None:
            mail["Subject"] = message.subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid(domain=domain)
        mail["X-Gateway-Message-Id"] = message.id
        if message.body is not None or message.html_body is None:
            mail.set_content(message.body or "")
            if message.html_body is not None:
                mail.add_alternative(message.html_body, subtype="html")
        else:
            mail.set_content(message.html_body, subtype="html")
    except (ValueError, TypeError) as exc:
        raise ProviderError("permanent", f"the message cannot be built: {exc}") from exc
    return mail


class SmtpSender:
    """One SMTP connection per message to the tenant's server (settings in message.config)."""

    name = "smtp"
    channel = "email"

    def __init__(
        self, ca_file: str | None = None, timeout: float = 15.0, hosts: HostGuard | None = None
    ) -> None:
        self.timeout = timeout
        # Built once, so a bad CA file fails at start-up rather than at the first send.
        self._tls = tls_context(ca_file)
        # Without one, the strict rule: public hosts on the SMTP ports only.
        self.hosts = hosts or HostGuard()

    async def send(self, message: OutboundMessage) -> SendResult:
        config = message.config
        if not isinstance(config, EmailConfig):
            raise ProviderError("configuration", "the email channel has no SMTP settings")
        missing = [name for name in ("host", "from_email") if not getattr(config, name)]
        if missing:
            raise ProviderError(
                "configuration", "the email channel is missing: " + ", ".join(missing)
            )
        assert config.from_email is not None
        mail = compose(message, config)
        message_id = str(mail["Message-ID"])
        assert config.host is not None
        sock: socket.socket | None = None
        client: SmtpClient | None = None
        stage: Stage = "connect"
        try:
            sock = await open_socket(config.host, config.effective_port, self.hosts, self.timeout)
            client = make_client(config, sock, self.timeout, context=self._tls)
            await client.connect()
            if config.username:
                stage = "authenticate"
                password = config.password.get_secret_value() if config.password else ""
                await client.login(config.username, password)
            stage = "send"
            _, reply = await client.send_message(
                mail, sender=config.from_email, recipients=[message.to]
            )
            # The server has accepted the message; a failed goodbye changes nothing.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            content_sent = client is not None and client.content_sent
            raise _translate(exc, stage, config, content_sent) from exc
        finally:
            if client is not None:
                client.close()
            if sock is not None:
                sock.close()
        return SendResult(
            provider=self.name,
            provider_message_id=message_id,
            provider_status=f"250 {reply}" if reply else "250 accepted",
        )

    async def aclose(self) -> None:
        return None
