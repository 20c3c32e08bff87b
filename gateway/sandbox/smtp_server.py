"""A real SMTP server on loopback, for tests and local development.

Built on aiosmtpd, it speaks the protocol a production relay speaks: STARTTLS on a plain port
(like 587), implicit TLS from the first byte (like 465), or no TLS at all; AUTH PLAIN and LOGIN;
and the 4xx/5xx replies a relay gives when it is unhappy, which tests switch on with
`fail_next` and `reject_recipient`. Everything it receives is kept in `messages`, parsed.

The server runs on its own event loop in a background thread, so it serves synchronous and
asynchronous clients alike; all state shared with the caller is guarded by a lock.

Clients trust the self-signed certificate through `cert_path` (or `client_tls_context()`), or
skip verification with aiosmtplib's `validate_certs=False`. By default the certificate lives in
a temporary folder removed at stop(); with `cert_dir` it is kept there and reused by the next
run (`ensure_certificate`), so a gateway's `SMTP_CA_FILE` stays valid across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import ipaddress
import logging
import os
import shutil
import signal
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.sandbox.server import free_port

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
# A kept certificate is renewed when it has less than this left, or does not cover the host.
_RENEW_BEFORE = datetime.timedelta(days=7)
_KEPT_VALIDITY = datetime.timedelta(days=365)

TlsMode = Literal["starttls", "tls", "none"]
Stage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    username: str | None  # who authenticated, None when the session did not
    encrypted: bool  # whether the message crossed the wire under TLS
    raw: bytes


@dataclass
class _Failure:
    reply: str
    remaining: int


def _drop_login_data_notice(record: logging.LogRecord) -> bool:
    return "login_data is deprecated" not in record.getMessage()


class SmtpSandbox:
    """An SMTP server on `host:port`; use as a context manager or call start() and stop().

    With both `username` and `password` set, a client must AUTH with exactly those before MAIL;
    otherwise AUTH is optional and any credentials are accepted.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        username: str | None = "user",
        password: str | None = "pass",
        tls_mode: TlsMode = "starttls",
        on_message: Callable[[ReceivedMessage], None] | None = None,
        cert_dir: Path | None = None,
    ) -> None:
        if tls_mode not in ("starttls", "tls", "none"):
            raise ValueError(f"unknown tls_mode {tls_mode!r}")
        self.host = host
        self.port = port or free_port(host)
        self.username = username
        self.password = password
        self.tls_mode: TlsMode = tls_mode
        self._on_message = on_message
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._messages: list[ReceivedMessage] = []
        self._auth_attempts: list[tuple[str, bool]] = []
        self._failures: dict[Stage, list[_Failure]] = {"mail": [], "rcpt": [], "data": []}
        self._rejected: dict[str, str] = {}
        # A RCPT failure is drawn once per transaction and then answers every RCPT in it.
        self._rcpt_failure: weakref.WeakKeyDictionary[Envelope, str | None] = (
            weakref.WeakKeyDictionary()
        )
        self._cert_dir = cert_dir
        self._tempdir: Path | None = None
        self._controller: Controller | None = None

    @property
    def auth_required(self) -> bool:
        return self.username is not None and self.password is not None

    @property
    def cert_path(self) -> Path:
        """PEM certificate to trust; exists from start() to stop() when TLS is on (and after
        stop() too when it lives in `cert_dir`)."""
        if self._cert_dir is not None and self.tls_mode != "none":
            return self._cert_dir / CERT_FILE
        if self._tempdir is None:
            raise RuntimeError("no certificate: the sandbox is not running with TLS")
        return self._tempdir / CERT_FILE

    def client_tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_path))

    # Lifecycle

    def start(self) -> SmtpSandbox:
        if self._controller is not None:
            raise RuntimeError("SMTP sandbox already running")
        # aiosmtpd logs a deprecation notice of its own making on every successful AUTH.
        logging.getLogger("mail.log").addFilter(_drop_login_data_notice)
        try:
            controller = self._controller_for(_Handler(self))
            controller.start()
        except BaseException:
            self._remove_tempdir()
            raise
        self._controller = controller
        return self

    def _controller_for(self, handler: _Handler) -> Controller:
        server_context = None
        if self.tls_mode != "none" and self._cert_dir is not None:
            ensure_certificate(self._cert_dir, self.host)
            server_context = _server_context(self._cert_dir)
        elif self.tls_mode != "none":
            self._tempdir = Path(tempfile.mkdtemp(prefix="smtp-sandbox-"))
            server_context = _write_self_signed(self._tempdir, self.host)
        return Controller(
            handler,
            hostname=self.host,
            port=self.port,
            ssl_context=server_context if self.tls_mode == "tls" else None,
            tls_context=server_context if self.tls_mode == "starttls" else None,
            server_hostname="localhost",  # avoids a reverse DNS lookup for the banner
            authenticator=handler.authenticate,
            # aiosmtpd only counts a STARTTLS upgrade as TLS, so with implicit TLS it would
            # refuse AUTH on a connection that is encrypted from the first byte.
            auth_require_tls=self.tls_mode == "starttls",
        )

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        self._remove_tempdir()

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> SmtpSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # Switches

    def fail_next(self, stage: Stage, code: int, message: str, count: int = 1) -> None:
        """Answer `code message` at `stage` for the next `count` transactions.

        At "rcpt" the reply covers every recipient of an affected transaction. Queued failures
        for the same stage are used in the order they were added.
        """
        if stage not in self._failures:
            raise ValueError(f"unknown stage {stage!r}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._failures[stage].append(_Failure(_reply(code, message), count))

    def reject_recipient(self, address: str, code: int, message: str) -> None:
        """Answer `code message` to every RCPT for `address` (case-insensitive) from now on."""
        with self._lock:
            self._rejected[address.lower()] = _reply(code, message)

    def reset(self) -> None:
        """Forget received messages, auth attempts and every switched-on failure."""
        with self._lock:
            self._messages.clear()
            self._auth_attempts.clear()
            for queue in self._failures.values():
                queue.clear()
            self._rejected.clear()

    # Observations

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def auth_attempts(self) -> list[tuple[str, bool]]:
        with self._lock:
            return list(self._auth_attempts)

    def wait_for_messages_blocking(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least `n` messages arrived; raises TimeoutError otherwise."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._messages) >= n, timeout):
                raise TimeoutError(f"{len(self._messages)} of {n} messages after {timeout}s")
            return list(self._messages)

    # The timeout parameter mirrors wait_for_messages_blocking so tests read the same either way.
    async def wait_for_messages(
        self,
        n: int,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[ReceivedMessage]:
        """Like wait_for_messages_blocking, without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while len(received := self.messages) < n:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(received)} of {n} messages after {timeout}s")
            await asyncio.sleep(0.01)
        return received

    # Called from the server thread by _Handler

    def _record_auth(self, username: str, success: bool) -> None:
        with self._lock:
            self._auth_attempts.append((username, success))

    def _take_failure(self, stage: Stage) -> str | None:
        with self._lock:
            queue = self._failures[stage]
            if not queue:
                return None
            failure = queue[0]
            failure.remaining -= 1
            if failure.remaining == 0:
                queue.pop(0)
            return failure.reply

    def _rcpt_reply(self, envelope: Envelope, address: str) -> str | None:
        with self._lock:
            rejected = self._rejected.get(address.lower())
        if rejected is not None:
            return rejected
        if envelope not in self._rcpt_failure:
            self._rcpt_failure[envelope] = self._take_failure("rcpt")
        return self._rcpt_failure[envelope]

    def _record_message(self, received: ReceivedMessage) -> None:
        with self._arrived:
            self._messages.append(received)
            self._arrived.notify_all()
        if self._on_message is not None:
            self._on_message(received)


class _Handler:
    """aiosmtpd hooks; returning a reply string overrides aiosmtpd's own answer."""

    def __init__(self, sandbox: SmtpSandbox) -> None:
        self._sandbox = sandbox

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = data.login.decode("utf-8", "replace")
        sandbox = self._sandbox
        success = not sandbox.auth_required or (
            hmac.compare_digest(data.login, (sandbox.username or "").encode())
            and hmac.compare_digest(data.password, (sandbox.password or "").encode())
        )
        sandbox._record_auth(username, success)
        if not success:
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535
        return AuthResult(success=True, auth_data=data)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Enforced here rather than with aiosmtpd's auth_required, which warns whenever auth
        # is required on a connection that may be unencrypted (tls_mode "tls" and "none").
        if self._sandbox.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        failure = self._sandbox._take_failure("mail")
        if failure is not None:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        failure = self._sandbox._rcpt_reply(envelope, address)
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self._sandbox._take_failure("data")
        if failure is not None:
            return failure
        raw = envelope.original_content or b""
        message = BytesParser(_class=EmailMessage, policy=default_policy).parsebytes(raw)
        auth_data = session.auth_data if session.authenticated else None
        transport = server.transport
        self._sandbox._record_message(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,
                username=(
                    auth_data.login.decode("utf-8", "replace")
                    if isinstance(auth_data, LoginPassword)
                    else None
                ),
                encrypted=transport is not None
                and transport.get_extra_info("ssl_object") is not None,
                raw=raw,
            )
        )
        return "250 OK: queued"


def _reply(code: int, message: str) -> str:
    if not 400 <= code <= 599:
        raise ValueError(f"a failure reply needs a 4xx or 5xx code, not {code}")
    if "\r" in message or "\n" in message:
        raise ValueError("the reply message must be a single line")
    return f"{code} {message}"


def ensure_certificate(directory: Path, host: str = "127.0.0.1") -> Path:
    """The kept certificate of `directory` (created with it when missing): reused while it
    covers `host` and is valid for a while yet, written anew otherwise. Returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / CERT_FILE
    if not _still_good(directory, host):
        _write_self_signed(directory, host, _KEPT_VALIDITY)
    return cert_file


def _still_good(directory: Path, host: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate((directory / CERT_FILE).read_bytes())
        _server_context(directory)  # the key is there and matches the certificate
    except (OSError, ValueError, ssl.SSLError):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc - now < _RENEW_BEFORE:
        return False
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return _alt_name(host) in list(names)


def _server_context(directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / CERT_FILE, directory / KEY_FILE)
    return context


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_self_signed(
    directory: Path, host: str, validity: datetime.timedelta = datetime.timedelta(days=7)
) -> ssl.SSLContext:
    """Write cert.pem and key.pem for localhost, 127.0.0.1 and `host`; return a server context.

    The certificate is its own CA with critical basicConstraints and keyUsage, which the
    strict verification that newer Pythons enable by default insists on.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    alt_names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        _alt_name(host),
    ]
    alt_names = list(dict.fromkeys(alt_names))
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first, readable by its owner only; then the certificate that names it.
    fd = os.open(directory / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    (directory / CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return _server_context(directory)


def run(
    host: str = "127.0.0.1",
    port: int | None = 2525,
    username: str | None = "user",
    password: str | None = "pass",
    tls_mode: TlsMode = "starttls",
) -> None:
    """Serve in the foreground until interrupted, printing a line per received message."""

    def show(received: ReceivedMessage) -> None:
        subject = received.message.get("Subject", "")
        print(f"{received.mail_from} -> {', '.join(received.rcpt_tos)}: {subject}", flush=True)

    sandbox = SmtpSandbox(
        host=host,
        port=port,
        username=username,
        password=password,
        tls_mode=tls_mode,
        on_message=show,
    )
    with sandbox:
        print(f"SMTP sandbox on {sandbox.host}:{sandbox.port} (tls_mode={tls_mode})", flush=True)
        if tls_mode != "none":
            print(f"certificate to trust: {sandbox.cert_path}", flush=True)
        if sandbox.auth_required:
            print(f"credentials: {username} / {password}", flush=True)
        # SIGTERM (a service manager, a container stop) ends the server like Ctrl-C, so the
        # temporary key and certificate are removed either way.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM)
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        finally:
            if in_main_thread and previous is not None:
                signal.signal(signal.SIGTERM, previous)
