"""Retention (RETENTION_DAYS): texts, transcripts and raw payloads older than the retention
are removed on the cron schedule, keeping the money and counts (gateway/store/retention.py
says which columns).

The cutoff is midnight UTC, RETENTION_DAYS days ago: it moves once a day, so the first run
of a day does that day's work and the other runs find every tenant's mark at the cutoff and
read nothing. Work is done in batches of `batch` rows, each its own transaction, at most
`max_batches` a run: a first run over years of history spreads over several minutes instead
of holding the writer. A run that scrubbed something is recorded in `erasures` (kind
`retention`, the counts, the cutoff: GET /admin/erasures) and logged; its counts are also
the cron run's outcome (`cron_runs`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

from gateway.ids import iso, new_id, now_iso
from gateway.store import erasure as erasures
from gateway.store import retention as store
from gateway.store.engine import Connection, Engine

log = logging.getLogger("gateway.retention")

BATCH = 500
MAX_BATCHES = 40


def cutoff_for(days: int, now: datetime | None = None) -> str:
    day = (now or datetime.now(UTC)).astimezone(UTC).date() - timedelta(days=days)
    return iso(datetime.combine(day, time(0), tzinfo=UTC))


class Retention:
    def __init__(
        self, db: Engine, days: int | None, *, batch: int = BATCH, max_batches: int = MAX_BATCHES
    ) -> None:
        self.db = db
        self.days = days
        self.batch = batch
        self.max_batches = max_batches

    @property
    def enabled(self) -> bool:
        return self.days is not None

    async def run(self, now: datetime | None = None) -> dict[str, int]:
        """One run: the rows scrubbed, per table (empty when retention is off)."""
        if self.days is None:
            return {}
        cutoff = cutoff_for(self.days, now)
        totals = dict.fromkeys(("channel_messages_log", "message_events", "call_logs"), 0)
        budget = self.max_batches
        for table in store.SCRUBBED:
            behind = await self.db.read_fn(self._behind(table, cutoff))
            for tenant_id in behind:
                while budget > 0:
                    budget -= 1
                    batch = await self.db.write_fn(self._batch(table, tenant_id, cutoff))
                    for name, count in batch.counts.items():
                        totals[name] += count
                    if batch.done:
                        break
        if any(totals.values()):
            await self.db.write_fn(
                lambda conn: erasures.record(
                    conn, new_id("era"), None, "retention", totals, now_iso(), cutoff
                )
            )
            log.info("retention run", extra={"older_than": cutoff, "counts": totals})
        return totals

    def _behind(self, table: str, cutoff: str) -> Callable[[Connection], list[str]]:
        return lambda conn: store.tenants_behind(conn, table, cutoff)

    def _batch(
        self, table: str, tenant_id: str, cutoff: str
    ) -> Callable[[Connection], store.Batch]:
        def scrub(conn: Connection) -> store.Batch:
            return store.scrub_batch(conn, table, tenant_id, cutoff, self.batch)

        return scrub
