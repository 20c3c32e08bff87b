"""WhatsApp through the tenant's own Business account: Meta's Cloud API, or 360dialog which
fronts the same API (one wire, two names in the message log), and their webhooks."""

from __future__ import annotations

from gateway.config import Settings
from gateway.providers.registry import Providers
from gateway.providers.whatsapp.cloud import WhatsAppCloud
from gateway.providers.whatsapp.webhooks import WhatsAppWebhooks


def register(providers: Providers, settings: Settings) -> None:
    typed = settings.typed

    def cloud() -> WhatsAppCloud:
        return WhatsAppCloud(
            typed.whatsapp_graph_base,
            typed.whatsapp_graph_version,
            typed.d360_api_base,
            typed.provider_timeout_seconds,
        )

    providers.register(
        ("meta_cloud", "360dialog"), WhatsAppCloud, {"send"}, cloud, channel="whatsapp"
    )
    providers.register("whatsapp", WhatsAppWebhooks, {"webhooks"}, WhatsAppWebhooks)
