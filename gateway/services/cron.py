"""The in-server scheduler that runs the tick at every minute matched by `[triggers] crons`
(the expressions themselves are parsed in `gateway.cron_expr`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from gateway.cron_expr import Cron

__all__ = ["Cron", "Scheduler"]

log = logging.getLogger("gateway.cron")


class Scheduler:
    """Runs `tick` at every minute matched by any of the crons (UTC, like Cloudflare)."""

    def __init__(self, crons: list[str], tick: Callable[[], Awaitable[object]]) -> None:
        self.crons = [Cron(c) for c in crons]
        self.tick = tick
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.crons:
            self._task = asyncio.create_task(self._run(), name="cron")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            now = datetime.now(UTC)
            next_minute = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
            await asyncio.sleep((next_minute - now).total_seconds())
            if any(cron.matches(next_minute) for cron in self.crons):
                try:
                    await self.tick()
                except Exception:
                    log.exception("scheduled tick failed")
