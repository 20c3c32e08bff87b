"""ALERT_WEBHOOK_URL: each new and each resolved alert POSTed as JSON, signed, retried with
backoff, from an outbox.

The delivery row is written in the transaction that opened (or resolved) the alert, so
nothing is lost between the two. A sender claims due rows the way the dispatcher claims
messages (`gateway.store.alerts.claim_deliveries`: a lease, `FOR UPDATE SKIP LOCKED` on
PostgreSQL), so two instances never both send one; a sender that dies holding a claim lets
the lease run out and another takes the row. The receiver may still see a delivery twice
(the POST landed, the instance died before recording it): `X-Gateway-Delivery` is stable
across attempts, for it to drop repeats.

Signature: `X-Gateway-Timestamp: <unix seconds>` and `X-Gateway-Signature: sha256=<hex>`,
the HMAC-SHA256 of `<timestamp>.<raw body>` under ALERT_WEBHOOK_SECRET; a receiver recomputes
it over the bytes it received, compares in constant time and refuses an old timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from gateway.errors import ConfigError
from gateway.ids import iso, new_id
from gateway.services.webhook_health import ALERT_WEBHOOK, WebhookHealth
from gateway.settings_model import GatewaySettings, reveal
from gateway.store import alerts as store
from gateway.store.engine import Connection, Engine, Row

log = logging.getLogger("gateway.alerts")

TIMEOUT_SECONDS = 10.0
LEASE = timedelta(seconds=60)  # several times the timeout: a live sender keeps its claim
MAX_BACKOFF_SECONDS = 3600.0
BATCH = 20


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class AlertWebhook:
    def __init__(
        self,
        db: Engine,
        url: str | None,
        secret: str | None,
        *,
        max_attempts: int = 8,
        backoff_seconds: float = 30.0,
        client: httpx.AsyncClient | None = None,
        health: WebhookHealth | None = None,
    ) -> None:
        if url and not secret:
            raise ConfigError("ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET to sign its posts")
        self.db = db
        self.url = url
        self.secret = secret or ""
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._client = client
        self.health = health or WebhookHealth(db)

    @classmethod
    def from_settings(cls, db: Engine, typed: GatewaySettings) -> AlertWebhook:
        return cls(
            db,
            typed.alert_webhook_url,
            reveal(typed.alert_webhook_secret),
            max_attempts=typed.alert_webhook_max_attempts,
            backoff_seconds=typed.alert_webhook_backoff_seconds,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed ones."""
        return float(min(self.backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS))

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Send the deliveries due at `now` (claimed first); how many were attempted."""
        if not self.url:
            return 0
        when = now or datetime.now(UTC)
        claim_id = new_id("clm")
        rows = await self.db.write_fn(
            lambda conn: store.claim_deliveries(conn, iso(when), iso(when + LEASE), claim_id, BATCH)
        )
        for row in rows:
            await self._attempt(row, claim_id, when)
        return len(rows)

    async def _attempt(self, row: Row, claim_id: str, when: datetime) -> None:
        body = str(row["body"]).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "channel-gateway-alerts",
            "X-Gateway-Event": f"alert.{row['event']}",
            "X-Gateway-Delivery": row["id"],
            "X-Gateway-Timestamp": str(timestamp),
            "X-Gateway-Signature": signature(self.secret, timestamp, body),
        }
        error: str | None = None
        try:
            response = await self._http().post(str(self.url), content=body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:200] or type(exc).__name__
        attempts = int(row["attempts"]) + 1
        await self._record(row, claim_id, attempts, error, when)
        await self.health.record(ALERT_WEBHOOK, error)

    async def _record(
        self, row: Row, claim_id: str, attempts: int, error: str | None, when: datetime
    ) -> None:
        if error is None:
            status, notification, next_at = "delivered", "delivered", when
        elif attempts >= self.max_attempts:
            status, notification, next_at = "failed", "failed", when
            log.error(
                "alert webhook given up",
                extra={"alert_id": row["alert_id"], "attempts": attempts, "error": error},
            )
        else:
            status, notification, next_at = (
                "pending",
                None,
                when + timedelta(seconds=self.backoff(attempts)),
            )
            log.warning(
                "alert webhook failed, retrying",
                extra={"alert_id": row["alert_id"], "attempts": attempts, "error": error},
            )

        def write(conn: Connection) -> None:
            recorded = store.finish_delivery(
                conn, row["id"], claim_id, status, attempts, iso(next_at), error, iso(when)
            )
            if recorded and notification is not None:
                store.mark_notification(conn, row["alert_id"], notification)

        await self.db.write_fn(write)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def delivery_view(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("event", "status", "attempts", "last_error", "delivered_at")}
