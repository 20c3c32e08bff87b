"""Applying provider status reports to messages: idempotent, order-independent, and a final
status never regresses (a late "sent" does not overwrite "delivered"). Every report is kept
in message_events whether it changed anything or not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.domain.messages import StatusReport
from gateway.ids import later_iso, now_iso
from gateway.services import pricing
from gateway.store import messages as store
from gateway.store.engine import Connection, Row


@dataclass(frozen=True)
class Applied:
    message_id: str
    tenant_id: str
    channel: str
    status: str
    changed: bool


def apply_report(
    conn: Connection,
    row: Row,
    report: StatusReport,
    price_delay: float,
    *,
    poll_delay: float | None = None,
    proof: bool = False,
    priced: bool = False,
    usd_eur_rate: float | None = None,
) -> Applied:
    """Apply one provider report to the message `row` (read in this same transaction).

    `proof` says the report names our message itself (Twilio's StatusCallback carries our
    message id): then its provider id is this message's, even if a reconciliation had
    guessed it belonged to a twin — the twin gives it back and is looked up again.
    `priced` says the provider can be asked for the message (its price once final, its
    status while the final one has not come). A price the report carries is applied at once
    (converted at `usd_eur_rate`) when the message has none yet."""
    if report.provider_message_id and row["provider"]:
        _take_provider_id(conn, row, report, proof)
    now = now_iso()
    at = report.at or now
    fields: dict[str, Any] = {"provider_status": report.provider_status, "updated_at": now}
    if report.status in ("sent", "delivered", "read") and not row["sent_at"]:
        fields["sent_at"] = at
    if report.status in ("delivered", "read") and not row["delivered_at"]:
        fields["delivered_at"] = at
    if report.status in ("failed", "undelivered"):
        fields["failed_at"] = at
        fields["error_code"] = report.error_code
        fields["failure_reason"] = report.error_reason or (
            f"provider error {report.error_code}"
            if report.error_code
            else f"provider reported {report.provider_status}"
        )
    cost = _reported_cost(row, report, usd_eur_rate)
    if cost is not None:
        fields.update(cost)
    if report.status in store.FINAL:
        fields["poll_due_at"] = None
        if priced and row["provider_cost"] is None and cost is None:
            fields["price_due_at"] = later_iso(price_delay)
    elif priced and poll_delay is not None and row["poll_due_at"] is None:
        fields["poll_due_at"] = later_iso(poll_delay)
    if report.status in ("sent", "delivered", "read", "undelivered", "failed"):
        # the provider has it: nothing is left to reconcile, nothing to retry
        fields.update(needs_reconciliation=0, next_attempt_at=None)
    changed = store.move(conn, row["id"], report.status, fields)
    store.insert_event(
        conn, row["id"], row["tenant_id"], report.source, report.status, changed, report.payload
    )
    return Applied(row["id"], row["tenant_id"], row["channel"], report.status, changed)


def _reported_cost(
    row: Row, report: StatusReport, usd_eur_rate: float | None
) -> dict[str, Any] | None:
    if not report.price or usd_eur_rate is None or row["provider_cost"] is not None:
        return None
    cost = pricing.provider_cost(report.price, report.price_unit, usd_eur_rate)
    if cost is None:
        return None
    return pricing.cost_fields(
        cost,
        price_per_unit=row["price_per_unit"],
        segments=row["num_segments"],
        billed=row["billed_cost"],
    )


def _take_provider_id(conn: Connection, row: Row, report: StatusReport, proof: bool) -> None:
    sid = report.provider_message_id
    assert sid is not None
    if row["provider_message_id"] == sid:
        return
    holder = store.holder_of(conn, row["provider"], sid)
    if holder is None:
        if row["provider_message_id"] is None:
            store.update_message(conn, row["id"], {"provider_message_id": sid})
        # else: a second provider message for one of ours; the event keeps the record
        return
    if not proof:
        return  # found by that very id, or no way to tell: the holder keeps it
    store.exchange_provider_id(conn, sid, holder=holder, owner=row["id"], now=now_iso())
    store.insert_event(
        conn,
        holder,
        store.tenant_of(conn, holder),
        report.source,
        None,
        True,
        {"gave_back": sid, "to": row["id"], "reason": "a status callback named its message"},
    )
