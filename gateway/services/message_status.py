"""Applying provider status reports to messages: idempotent, order-independent, and a final
status never regresses (a late "sent" does not overwrite "delivered"). Every report is kept
in message_events whether it changed anything or not."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway.ids import iso, now_iso, parse_iso
from gateway.store import messages as store

TWILIO_STATUS = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "read": "read",
    "canceled": "canceled",
}
TWILIO_ERRORS = {
    "30001": "queue overflow at the carrier",
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient or carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error from the carrier",
}


@dataclass(frozen=True)
class StatusReport:
    status: str  # our status vocabulary
    provider_status: str
    source: str
    payload: dict[str, Any]
    error_code: str | None = None
    error_reason: str | None = None
    provider_message_id: str | None = None
    at: str | None = None


@dataclass(frozen=True)
class Applied:
    message_id: str
    tenant_id: str
    channel: str
    status: str
    changed: bool


def apply_report(
    conn: sqlite3.Connection, row: sqlite3.Row, report: StatusReport, price_delay: float
) -> Applied:
    current = row["status"]
    changed = store.STATUS_RANK.get(report.status, -1) > store.STATUS_RANK.get(current, -1)
    store.insert_event(
        conn, row["id"], row["tenant_id"], report.source, report.status, changed, report.payload
    )
    fields: dict[str, Any] = {}
    if report.provider_message_id and not row["provider_message_id"]:
        fields["provider_message_id"] = report.provider_message_id
    if changed:
        now = report.at or now_iso()
        fields.update(
            status=report.status, provider_status=report.provider_status, updated_at=now_iso()
        )
        if report.status in ("sent", "delivered", "read") and not row["sent_at"]:
            fields["sent_at"] = now
        if report.status in ("delivered", "read") and not row["delivered_at"]:
            fields["delivered_at"] = now
        if report.status in ("failed", "undelivered"):
            fields["failed_at"] = now
            fields["error_code"] = report.error_code
            fields["failure_reason"] = report.error_reason or (
                TWILIO_ERRORS.get(report.error_code or "", f"provider error {report.error_code}")
                if report.error_code
                else f"provider reported {report.provider_status}"
            )
        if (
            report.status in store.FINAL
            and row["channel"] == "sms"
            and row["provider"] == "twilio"
            and row["provider_cost"] is None
        ):
            fields["price_due_at"] = iso(parse_iso(now_iso()) + timedelta(seconds=price_delay))
        if report.status in ("sent", "delivered", "read", "undelivered", "failed"):
            fields["needs_reconciliation"] = 0
    store.update_message(conn, row["id"], fields)
    return Applied(row["id"], row["tenant_id"], row["channel"], report.status, changed)
