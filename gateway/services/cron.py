"""The in-server scheduler that runs the tick at every minute matched by `[triggers] crons`
(the expressions themselves are parsed in `gateway.cron_expr`).

Every instance runs a scheduler, and each scheduled minute runs once across them: before
running it, an instance claims the minute in `cron_runs` (`gateway.store.cron_runs`); the
instance whose claim lands runs the tick, the others skip it. The work a tick does is claimed
row by row as well (reminders), so even two ticks that overlap never do one thing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from gateway.cron_expr import Cron
from gateway.ids import instance_id, iso, now_iso
from gateway.store import cron_runs as store
from gateway.store.engine import Connection, Engine

__all__ = ["Cron", "Scheduler", "instance_id"]

log = logging.getLogger("gateway.cron")

# how long the record of a run is kept
KEEP_RUNS = timedelta(days=3)


class Scheduler:
    """Runs `tick` at every minute matched by any of the crons (UTC, like Cloudflare); with
    a database, only when this instance claimed the minute."""

    def __init__(
        self,
        crons: list[str],
        tick: Callable[[], Awaitable[object]],
        db: Engine | None = None,
        *,
        job: str = "tick",
        instance: str | None = None,
    ) -> None:
        self.crons = [Cron(c) for c in crons]
        self.tick = tick
        self.db = db
        self.job = job
        self.instance = instance or instance_id()
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
                    await self.run_at(next_minute)
                except Exception:
                    log.exception("scheduled tick failed")

    async def run_at(self, minute: datetime) -> bool:
        """Run the tick scheduled at `minute` unless another instance claimed it first;
        True when this instance ran it."""
        scheduled = iso(minute.astimezone(UTC).replace(second=0, microsecond=0))
        if self.db is not None and not await self.db.write_fn(self._claimer(scheduled)):
            log.debug("tick run by another instance", extra={"scheduled_at": scheduled})
            return False
        try:
            result = await self.tick()
        except Exception as exc:
            await self._finish(scheduled, f"error: {type(exc).__name__}: {exc}"[:500])
            raise
        await self._finish(scheduled, json.dumps(result, default=str))
        return True

    def _claimer(self, scheduled: str) -> Callable[[Connection], bool]:
        forget = iso(datetime.now(UTC) - KEEP_RUNS)

        def claim(conn: Connection) -> bool:
            store.forget_before(conn, self.job, forget)
            return store.claim(conn, self.job, scheduled, self.instance, now_iso())

        return claim

    async def _finish(self, scheduled: str, outcome: str) -> None:
        if self.db is None:
            return
        await self.db.write_fn(
            lambda conn: store.finish(conn, self.job, scheduled, now_iso(), outcome)
        )
