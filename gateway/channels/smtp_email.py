"""The tenant's own SMTP server (bring your own server), through aiosmtplib.

Error translation (DESIGN §8): connection problems and 4xx replies are transient, 5xx
replies permanent, and an authentication failure (535) is a configuration error.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from gateway.channel_models import EmailConfig

Outcome = Literal["ok", "transient", "permanent", "configuration"]


@dataclass(frozen=True)
class SmtpCheck:
    ok: bool
    stage: str
    outcome: Outcome
    detail: str
    code: int | None = None


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def make_client(config: EmailConfig, ca_file: str | None, timeout: float) -> aiosmtplib.SMTP:
    assert config.host is not None
    return aiosmtplib.SMTP(
        hostname=config.host,
        port=config.effective_port,
        use_tls=config.security == "tls",
        start_tls=config.security == "starttls",
        tls_context=tls_context(ca_file) if config.security != "none" else None,
        timeout=timeout,
    )


def classify(exc: BaseException) -> tuple[Outcome, int | None]:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "configuration", exc.code
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return ("transient" if 400 <= exc.code < 500 else "permanent"), exc.code
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "configuration", None
    return "transient", None


def describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}".strip()
    return str(exc) or type(exc).__name__


async def check_connection(
    config: EmailConfig, ca_file: str | None = None, connect_timeout: float = 10.0
) -> SmtpCheck:
    """Connect (with TLS as configured) and authenticate, then quit without sending."""
    client = make_client(config, ca_file, connect_timeout)
    stage = "connect"
    try:
        await client.connect()
        if config.username:
            stage = "authenticate"
            password = config.password.get_secret_value() if config.password else ""
            await client.login(config.username, password)
        stage = "quit"
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        outcome, code = classify(exc)
        if stage == "connect" and outcome == "transient":
            detail = f"could not connect to {config.host}:{config.effective_port}: {describe(exc)}"
        elif outcome == "configuration" and stage == "authenticate":
            detail = f"authentication failed: {describe(exc)}"
        else:
            detail = describe(exc)
        client.close()
        return SmtpCheck(False, stage, outcome, detail, code)
    return SmtpCheck(True, "done", "ok", "connected and authenticated")
