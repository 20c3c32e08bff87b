"""Inbound calls: tenant resolution and the Vapi bridge (stub: being written)."""

from __future__ import annotations

from gateway.config import Settings
from gateway.db import Database
from gateway.services.channel_config import ChannelConfigService


class VoiceService:
    def __init__(self, db: Database, settings: Settings, channels: ChannelConfigService) -> None:
        self.db = db
        self.settings = settings
        self.channels = channels

    async def aclose(self) -> None:
        return None
