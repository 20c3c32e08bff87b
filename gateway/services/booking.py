"""Booking engine (stub: being written)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.db import Database
from gateway.services.channel_config import ChannelConfigService

OnBooked = Callable[[str, dict[str, Any]], Awaitable[None]]


class BookingService:
    def __init__(
        self, db: Database, channels: ChannelConfigService, on_booked: OnBooked | None = None
    ) -> None:
        self.db = db
        self.channels = channels
        self.on_booked = on_booked
