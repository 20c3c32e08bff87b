"""SMTP: email through the tenant's own server (bring your own server)."""

from __future__ import annotations

from gateway.config import Settings
from gateway.net_guard import HostGuard
from gateway.providers.registry import Providers
from gateway.providers.smtp.sender import SmtpSender


def register(providers: Providers, settings: Settings) -> None:
    typed = settings.typed

    def sender() -> SmtpSender:
        ca_file = typed.smtp_ca_file
        return SmtpSender(
            str(ca_file) if ca_file is not None else None,
            timeout=max(typed.provider_timeout_seconds, 15.0),
            hosts=HostGuard.from_settings(settings),
        )

    providers.register("smtp", SmtpSender, {"send"}, sender, channel="email")
