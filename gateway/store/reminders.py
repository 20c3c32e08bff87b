"""SQL for appointment confirmations and reminders (operator scope: the cron serves every
tenant)."""

from __future__ import annotations

import sqlite3

_KINDS = {
    "24h": ("reminder_24h_message_id", "reminder_24h_at"),
    "1h": ("reminder_1h_message_id", "reminder_1h_at"),
}


def due_reminders(
    conn: sqlite3.Connection,
    kind: str,
    window_start: str,
    window_end: str,
    lead_seconds: int,
    limit: int,
) -> list[sqlite3.Row]:
    """Booked appointments starting in [window_start, window_end) whose reminder of this
    kind has not been sent, leaving out those booked less than `lead_seconds` before their
    start (the confirmation just told them)."""
    message_column, _ = _KINDS[kind]
    return conn.execute(
        "SELECT r.* FROM rendez_vous r "
        f"WHERE r.status = 'booked' AND r.{message_column} IS NULL "
        "AND r.starts_at >= ? AND r.starts_at < ? "
        "AND r.created_at < strftime('%Y-%m-%dT%H:%M:%fZ', r.starts_at, ?) "
        "ORDER BY r.starts_at LIMIT ?",
        (window_start, window_end, f"-{lead_seconds} seconds", limit),
    ).fetchall()


def mark_reminder(
    conn: sqlite3.Connection, appointment_id: str, kind: str, message_id: str, when: str
) -> None:
    message_column, at_column = _KINDS[kind]
    conn.execute(
        f"UPDATE rendez_vous SET {message_column} = ?, {at_column} = ? WHERE id = ? "
        f"AND {message_column} IS NULL",
        (message_id, when, appointment_id),
    )


def mark_confirmation(conn: sqlite3.Connection, appointment_id: str, message_id: str) -> None:
    """The latest confirmation (a moved appointment's confirms its new time)."""
    conn.execute(
        "UPDATE rendez_vous SET confirmation_message_id = ? WHERE id = ?",
        (message_id, appointment_id),
    )
