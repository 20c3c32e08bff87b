"""Alerts: the evaluation the cron schedule runs, the list the operator reads, the run of
webhook failures each webhook adds to, and the figures the Prometheus gauges show.

An evaluation reads the figures (`gateway.store.alerts.read_figures`), asks the rules
(`gateway.services.alert_rules`) which conditions hold, and in one write transaction opens an
alert for each condition without an active one, refreshes the value and `last_seen` of those
still holding, resolves those that no longer hold, and stores the figures of the gauges. An
alert opened or resolved while ALERT_WEBHOOK_URL is set gets its delivery row in the same
transaction (`gateway.services.alert_webhook` sends it). The evaluation is its own Scheduler
job on `[triggers] crons`, so each scheduled minute evaluates once across instances; an
evaluation overlapping another anyway cannot duplicate an alert (one active alert per
condition is a unique index).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.ids import iso
from gateway.metrics import Metrics
from gateway.services import alert_rules as rules
from gateway.services.alert_webhook import AlertWebhook
from gateway.store import alerts as store
from gateway.store.engine import Connection, Engine, Row
from gateway.store.paging import encode_cursor

log = logging.getLogger("gateway.alerts")


def alert_view(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "rule": row["rule"],
        "subject": row["subject"] or None,
        "value": row["value"],
        "threshold": row["threshold"],
        "state": "active" if row["resolved_at"] is None else "resolved",
        "since": row["since"],
        "last_seen": row["last_seen"],
        "resolved_at": row["resolved_at"],
        "notification": row["notification"],
    }


def _bounds(now: datetime) -> dict[str, str]:
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return {
        "now": iso(now),
        "day_start": iso(now - timedelta(hours=24)),
        "week_start": iso(now - timedelta(days=7)),
        "month_start": iso(month),
    }


class AlertService:
    def __init__(
        self, db: Engine, limits: rules.Limits, webhook: AlertWebhook, metrics: Metrics
    ) -> None:
        self.db = db
        self.limits = limits
        self.webhook = webhook
        self.metrics = metrics

    async def evaluate(self, now: datetime | None = None) -> dict[str, int]:
        """Evaluate every rule at `now`; what was opened, resolved and is active."""
        when = now or datetime.now(UTC)
        bounds = _bounds(when)
        figures = await self.db.read_fn(lambda conn: store.read_figures(conn, bounds))
        conditions, gauges = rules.evaluate(figures, self.limits)
        outcome = await self.db.write_fn(self._apply(conditions, gauges, bounds["now"]))
        await self.refresh_gauges()
        return outcome

    async def tick(self) -> dict[str, int]:
        """The Scheduler job: evaluate, then send what it opened or resolved."""
        outcome = await self.evaluate()
        if self.webhook.enabled:
            outcome["webhooks"] = await self.webhook.deliver_due()
        return outcome

    async def every_minute(self) -> None:
        """On every instance: send the deliveries due, show the last evaluation's figures."""
        if self.webhook.enabled:
            await self.webhook.deliver_due()
        await self.refresh_gauges()

    def _apply(
        self, conditions: list[rules.Condition], gauges: list[rules.Gauge], now: str
    ) -> Callable[[Connection], dict[str, int]]:
        notification = "pending" if self.webhook.enabled else None

        def write(conn: Connection) -> dict[str, int]:
            active = {(r["scope"], r["rule"], r["subject"]): r for r in store.active_alerts(conn)}
            opened = resolved = 0
            for condition in conditions:
                row = active.pop(condition.key, None)
                if row is not None:
                    store.touch_alert(conn, row["id"], condition.value, now)
                    continue
                new = store.open_alert(
                    conn, *condition.key, condition.value, condition.threshold, now, notification
                )
                if new is not None:
                    opened += 1
                    self._notify(conn, new, "fired", now)
            for row in active.values():  # no longer holds
                done = store.resolve_alert(conn, row["id"], now)
                if done is not None:
                    resolved += 1
                    self._notify(conn, done, "resolved", now)
            store.replace_figures(conn, [(g.scope, g.figure, g.value) for g in gauges], now)
            still = len(active) - resolved
            return {"opened": opened, "resolved": resolved, "active": len(conditions) + still}

        return write

    def _notify(self, conn: Connection, alert: Row, event: str, now: str) -> None:
        if not self.webhook.enabled:
            return
        body = json.dumps({"event": f"alert.{event}", "alert": alert_view(alert)})
        store.add_delivery(conn, alert["id"], event, body, now)

    async def list(
        self, state: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        rows = await store.list_alerts(self.db, state, limit + 1, cursor)
        shown = rows[:limit]
        more = len(rows) > limit
        return [alert_view(r) for r in shown], encode_cursor(shown[-1]["id"]) if more else None

    async def refresh_gauges(self) -> None:
        figures = await store.stored_figures(self.db)
        counts = await store.active_counts(self.db)
        self.metrics.show_alert_figures(
            [(r["scope"], r["figure"], float(r["value"])) for r in figures],
            {rule: 0 for rule in rules.RULES} | {r["rule"]: int(r["n"]) for r in counts},
        )

    async def webhook_outcome(self, provider: str, failure: str | None) -> None:
        """A provider webhook was handled (`failure` None) or refused/failed (why)."""
        source = f"in:{provider}"
        try:
            await self.webhook.health.record(source, failure)
        except Exception:  # the webhook's own answer matters more than this bookkeeping
            log.exception("could not record a webhook outcome", extra={"source": source})
