"""Webhooks failing in a row, per source: `in:<provider>` for the provider webhooks this
gateway refused (bad signature, malformed) or failed to process, `out:alert_webhook` for
ALERT_WEBHOOK_URL answering an error or not at all. The `webhook_failures` alert rule reads
the runs (three in a row page the operator)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.ids import iso
from gateway.services.alert_rules import WEBHOOK_FAILURES_IN_A_ROW
from gateway.store import alerts as store
from gateway.store.engine import Engine

ALERT_WEBHOOK = "out:alert_webhook"
INBOUND = "in:"
# how often a run long enough to page is written again while it lasts
QUIET_SECONDS = 60.0


class WebhookHealth:
    """Records each webhook's outcome. A failure adds to its source's run (one write); a
    success ends the run, and writes only when one is on: provider webhooks are among the
    gateway's busiest requests, so a success costs one read, and on SQLite none once this
    process knows the source has no run — one process writes a SQLite file, so a run this
    process did not start since it last saw none does not exist. On PostgreSQL other
    instances add to the runs too: every success reads.

    A provider webhook's failures (anyone can post one) cost a write each only until the run
    is long enough to page (`WEBHOOK_FAILURES_IN_A_ROW`): from then on, while the run lasts,
    this process writes one more at most every `QUIET_SECONDS` (to keep `last_failure_at`
    current), so a flood of forged or unsigned requests cannot turn into a flood of writes.
    A success ends the quiet period. The gateway's own posts (`out:`) are few, paced by their
    backoff: each is counted."""

    def __init__(self, db: Engine, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self._only_writer = db.dialect == "sqlite"
        self._clear: set[str] = set()
        self._failures: Counter[str] = Counter()  # failures recorded, per source
        self._quiet_until: dict[str, float] = {}  # run long enough: next write not before
        self._clock = clock

    async def record(self, source: str, failure: str | None) -> None:
        """`failure` says why the webhook failed; None: it succeeded."""
        now = iso(datetime.now(UTC))
        if failure is not None:
            self._clear.discard(source)
            if self._clock() < self._quiet_until.get(source, 0.0):
                return  # the run already pages; it is written again once the quiet ends
            self._failures[source] += 1
            run = await self.db.write_fn(
                lambda conn: store.webhook_failed(conn, source, failure, now)
            )
            if run >= WEBHOOK_FAILURES_IN_A_ROW and source.startswith(INBOUND):
                self._quiet_until[source] = self._clock() + QUIET_SECONDS
            return
        self._quiet_until.pop(source, None)
        if source in self._clear:
            return
        seen = self._failures[source]
        if await store.failing_webhook(self.db, source):
            await self.db.write_fn(lambda conn: store.webhook_succeeded(conn, source, now))
        if self._only_writer and self._failures[source] == seen:  # no failure meanwhile
            self._clear.add(source)
