"""SQL for appointment confirmations and reminders (operator scope: the cron serves every
tenant).

A reminder is claimed before it is sent, in one statement: while its message id is NULL,
`reminder_<kind>_at` is when a tick claimed it, and a claim older than the lease may be taken
again (the tick that held it died; accepting with the same idempotency key gives the same
message back, so the retry sends nothing twice). On PostgreSQL the rows are picked with
`FOR UPDATE SKIP LOCKED`, and the claim conditions are checked again on the row as updated:
two ticks claiming at once, on any number of instances, each get different appointments.
Once the message is accepted the reminder is marked with it (`mark_reminder`).
"""

from __future__ import annotations

from gateway.store.dialect import earlier_by_more_than
from gateway.store.engine import Connection, Row

_KINDS = {
    "24h": ("reminder_24h_message_id", "reminder_24h_at"),
    "1h": ("reminder_1h_message_id", "reminder_1h_at"),
}


def claim_reminders(
    conn: Connection,
    kind: str,
    window_start: str,
    window_end: str,
    lead_seconds: int,
    now: str,
    stale_before: str,
    limit: int,
) -> list[Row]:
    """Claim the booked appointments starting in [window_start, window_end) whose reminder
    of this kind has not been sent nor claimed since `stale_before`, leaving out those booked
    less than `lead_seconds` before their start (the confirmation just told them); each row
    comes back claimed at `now`, earliest start first."""
    message_column, at_column = _KINDS[kind]
    booked_early = earlier_by_more_than(conn.dialect, "r.created_at", "r.starts_at", "?")
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgres" else ""
    unclaimed = f"{message_column} IS NULL AND ({at_column} IS NULL OR {at_column} < ?)"
    rows = conn.execute(
        f"UPDATE rendez_vous SET {at_column} = ? "
        "WHERE id IN ("
        "SELECT r.id FROM rendez_vous r "
        f"WHERE r.status = 'booked' AND r.{message_column} IS NULL "
        f"AND (r.{at_column} IS NULL OR r.{at_column} < ?) "
        f"AND r.starts_at >= ? AND r.starts_at < ? AND {booked_early} "
        # a suspended tenant's reminders wait; still in their window once it is resumed
        "AND EXISTS (SELECT 1 FROM tenants t WHERE t.id = r.tenant_id AND t.status = 'active') "
        f"ORDER BY r.starts_at LIMIT ?{lock}) "
        f"AND status = 'booked' AND {unclaimed} RETURNING *",
        (now, stale_before, window_start, window_end, lead_seconds, limit, stale_before),
    ).fetchall()
    return sorted(rows, key=lambda row: (row["starts_at"], row["id"]))


def release_reminder(conn: Connection, appointment_id: str, kind: str, claimed_at: str) -> None:
    """Give back a claim that sent nothing (no channel could carry it): the next tick tries
    again."""
    message_column, at_column = _KINDS[kind]
    conn.execute(
        f"UPDATE rendez_vous SET {at_column} = NULL WHERE id = ? "
        f"AND {message_column} IS NULL AND {at_column} = ?",
        (appointment_id, claimed_at),
    )


def mark_reminder(
    conn: Connection,
    appointment_id: str,
    kind: str,
    message_id: str,
    when: str,
    starts_at: str,
) -> None:
    """The reminder went out as `message_id` — unless the appointment moved meanwhile (its
    reminders are then for the new time)."""
    message_column, at_column = _KINDS[kind]
    conn.execute(
        f"UPDATE rendez_vous SET {message_column} = ?, {at_column} = ? WHERE id = ? "
        f"AND {message_column} IS NULL AND starts_at = ?",
        (message_id, when, appointment_id, starts_at),
    )


def mark_confirmation(conn: Connection, appointment_id: str, message_id: str) -> None:
    """The latest confirmation (a moved appointment's confirms its new time)."""
    conn.execute(
        "UPDATE rendez_vous SET confirmation_message_id = ? WHERE id = ?",
        (message_id, appointment_id),
    )
