"""One adapter per provider, created on first use and shared (connection pooling)."""

from __future__ import annotations

from gateway.channels.base import Adapter
from gateway.config import Settings


class Adapters:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Adapter] = {}

    def __call__(self, channel: str, provider: str | None) -> Adapter | None:
        key = "whatsapp" if channel == "whatsapp" else channel
        if key not in self._made:
            adapter = self._make(key)
            if adapter is None:
                return None
            self._made[key] = adapter
        return self._made[key]

    def _make(self, channel: str) -> Adapter | None:
        s = self.settings
        timeout = float(s.get("PROVIDER_TIMEOUT_SECONDS", "10") or 10)
        if channel == "sms":
            from gateway.channels.twilio_sms import TwilioSmsAdapter

            sid, token = s.get("TWILIO_ACCOUNT_SID"), s.get("TWILIO_AUTH_TOKEN")
            if not sid or not token:
                return None
            return TwilioSmsAdapter(sid, token, s.require("TWILIO_API_BASE"), timeout)
        if channel == "email":
            from gateway.channels.smtp_email import EmailAdapter
            from gateway.net_guard import HostGuard

            return EmailAdapter(
                s.get("SMTP_CA_FILE"),
                timeout=max(timeout, 15.0),
                hosts=HostGuard.from_settings(s),
            )
        if channel == "whatsapp":
            from gateway.channels.whatsapp import WhatsAppAdapter

            return WhatsAppAdapter(
                s.require("WHATSAPP_GRAPH_BASE"),
                s.require("WHATSAPP_GRAPH_VERSION"),
                s.require("D360_API_BASE"),
                timeout,
            )
        return None

    async def aclose(self) -> None:
        for adapter in self._made.values():
            await adapter.aclose()
        self._made.clear()
