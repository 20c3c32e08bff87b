"""SQL for appointment confirmations and reminders (operator scope: the cron serves every
tenant)."""

from __future__ import annotations

from gateway.store.dialect import earlier_by_more_than
from gateway.store.engine import Connection, Row

_KINDS = {
    "24h": ("reminder_24h_message_id", "reminder_24h_at"),
    "1h": ("reminder_1h_message_id", "reminder_1h_at"),
}


def due_reminders(
    conn: Connection,
    kind: str,
    window_start: str,
    window_end: str,
    lead_seconds: int,
    limit: int,
) -> list[Row]:
    """Booked appointments starting in [window_start, window_end) whose reminder of this
    kind has not been sent, leaving out those booked less than `lead_seconds` before their
    start (the confirmation just told them)."""
    message_column, _ = _KINDS[kind]
    booked_early = earlier_by_more_than(conn.dialect, "r.created_at", "r.starts_at", "?")
    return conn.execute(
        "SELECT r.* FROM rendez_vous r "
        f"WHERE r.status = 'booked' AND r.{message_column} IS NULL "
        f"AND r.starts_at >= ? AND r.starts_at < ? AND {booked_early} "
        "ORDER BY r.starts_at LIMIT ?",
        (window_start, window_end, lead_seconds, limit),
    ).fetchall()


def mark_reminder(
    conn: Connection, appointment_id: str, kind: str, message_id: str, when: str
) -> None:
    message_column, at_column = _KINDS[kind]
    conn.execute(
        f"UPDATE rendez_vous SET {message_column} = ?, {at_column} = ? WHERE id = ? "
        f"AND {message_column} IS NULL",
        (message_id, when, appointment_id),
    )


def mark_confirmation(conn: Connection, appointment_id: str, message_id: str) -> None:
    """The latest confirmation (a moved appointment's confirms its new time)."""
    conn.execute(
        "UPDATE rendez_vous SET confirmation_message_id = ? WHERE id = ?",
        (message_id, appointment_id),
    )
