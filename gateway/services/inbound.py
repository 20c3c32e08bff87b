"""Provider webhooks after their signature was checked: status reports and inbound
messages, applied idempotently."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.db import Database
from gateway.ids import new_id, now_iso
from gateway.metrics import Metrics
from gateway.services.message_status import TWILIO_STATUS, Applied, StatusReport, apply_report
from gateway.store import messages as store
from gateway.store import tenants as tenant_store

log = logging.getLogger("gateway.webhooks")

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})


@dataclass(frozen=True)
class InboundText:
    channel: str
    provider: str
    provider_message_id: str
    from_address: str
    to_address: str
    body: str
    payload: dict[str, Any]


class InboundService:
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        price_delay: float,
        poll_delay: float | None = None,
        operator_numbers: frozenset[str] = frozenset(),
    ) -> None:
        self.db = db
        self.operator_numbers = operator_numbers
        self.metrics = metrics
        self.price_delay = price_delay
        self.poll_delay = poll_delay

    async def apply_status(
        self,
        report: StatusReport,
        *,
        message_id: str | None = None,
        provider: str | None = None,
        tenant_id: str | None = None,
    ) -> Applied | None:
        """Find the message (by our id, else by the provider's id) and apply the report."""

        def write(conn: sqlite3.Connection) -> Applied | None:
            row = store.find_by_id(conn, message_id) if message_id else None
            # our message id in the callback URL (signed with the URL) names the message
            proof = row is not None and row["direction"] == "outbound"
            if row is None and provider and report.provider_message_id:
                row = store.find_by_provider_id(conn, provider, report.provider_message_id)
            if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
                return None
            if provider is not None and row["provider"] != provider:
                return None
            return apply_report(
                conn, row, report, self.price_delay, poll_delay=self.poll_delay, proof=proof
            )

        applied = await self.db.write_fn(write)
        if applied is None:
            log.info("status report for an unknown message", extra={"source": report.source})
        elif applied.changed:
            if applied.status in ("delivered", "read"):
                self.metrics.delivered.labels(applied.channel).inc()
            elif applied.status in ("failed", "undelivered"):
                self.metrics.failed.labels(applied.channel, "provider").inc()
        return applied

    @staticmethod
    def twilio_report(params: dict[str, str]) -> StatusReport | None:
        provider_status = params.get("MessageStatus") or params.get("SmsStatus") or ""
        status = TWILIO_STATUS.get(provider_status)
        if status is None:
            return None
        return StatusReport(
            status=status,
            provider_status=provider_status,
            source="twilio_status",
            payload=params,
            error_code=params.get("ErrorCode") or None,
            provider_message_id=params.get("MessageSid") or params.get("SmsSid"),
        )

    async def tenants_for_inbound(self, channel: str, to: str, sender: str) -> list[str]:
        """Who an inbound message on number `to` from `sender` belongs to, first one first.

        A number dedicated to one tenant belongs to that tenant alone. On any other number —
        the shared line, an operator sender — every tenant's customers write in, so it goes
        to the tenants that wrote to this sender *from this number*, most recent first: the
        first gets the message, and a STOP applies to all of them (the provider itself stops
        that number from writing to the sender). A number no tenant wrote from belongs to
        nobody: a tenant can never claim inbound traffic by registering a number."""
        owner = await tenant_store.tenant_for_number(self.db, to)
        if owner is not None and owner[1] == "dedicated" and to not in self.operator_numbers:
            return [owner[0]]
        return await store.recent_tenants_for_recipient(self.db, channel, sender, sender=to)

    async def record_inbound(self, tenant_id: str, text: InboundText) -> bool:
        """Log an inbound message once (providers retry webhooks); True when new."""
        now = now_iso()
        row = {
            "id": new_id("msg"),
            "tenant_id": tenant_id,
            "channel": text.channel,
            "direction": "inbound",
            "to_address": text.to_address,
            "from_address": text.from_address,
            "body": text.body,
            "status": "received",
            "provider": text.provider,
            "provider_message_id": text.provider_message_id,
            "provider_status": "received",
            "character_count": len(text.body),
            "message_type": "transactional",
            "metadata": {},
            "created_at": now,
            "updated_at": now,
            "delivered_at": now,
        }

        def write(conn: sqlite3.Connection) -> bool:
            if store.find_by_provider_id(conn, text.provider, text.provider_message_id):
                return False
            columns = ", ".join(row)
            values = ", ".join(f":{k}" for k in row)
            conn.execute(
                f"INSERT INTO channel_messages_log ({columns}) VALUES ({values})",
                {**row, "metadata": "{}"},
            )
            store.insert_event(
                conn, str(row["id"]), tenant_id, text.provider, "received", True, text.payload
            )
            return True

        return await self.db.write_fn(write)

    async def opt_out(self, tenants: list[str], channel: str, address: str, word: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for tenant_id in tenants:
                if word in STOP_WORDS:
                    store.add_suppression(
                        conn, tenant_id, channel, address, "stop_keyword", f"replied {word}"
                    )
                else:
                    store.remove_suppression(conn, tenant_id, channel, address)

        await self.db.write_fn(write)
