"""SQL for the claimed runs of scheduled jobs (operator scope): one row per (job, minute),
inserted by the instance that runs it. The insert is the claim — a primary key that a
second instance's insert of the same minute conflicts with — so it holds with any number
of writers on either engine, and the row records which instance ran the tick."""

from __future__ import annotations

from gateway.store.engine import Connection, Row


def claim(conn: Connection, job: str, scheduled_at: str, instance: str, started_at: str) -> bool:
    """True when this instance now owns the run of `job` scheduled at `scheduled_at`; False
    when another instance (or an earlier attempt) claimed it first."""
    cursor = conn.execute(
        "INSERT INTO cron_runs (job, scheduled_at, instance, started_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (job, scheduled_at) DO NOTHING",
        (job, scheduled_at, instance, started_at),
    )
    return cursor.rowcount == 1


def finish(conn: Connection, job: str, scheduled_at: str, finished_at: str, outcome: str) -> None:
    conn.execute(
        "UPDATE cron_runs SET finished_at = ?, outcome = ? WHERE job = ? AND scheduled_at = ?",
        (finished_at, outcome, job, scheduled_at),
    )


def forget_before(conn: Connection, job: str, before: str) -> int:
    """Delete the runs of `job` scheduled before `before` (keeps the table bounded)."""
    cursor = conn.execute("DELETE FROM cron_runs WHERE job = ? AND scheduled_at < ?", (job, before))
    return cursor.rowcount


def runs(conn: Connection, job: str) -> list[Row]:
    """The recorded runs of `job`, oldest first."""
    return conn.execute(
        "SELECT * FROM cron_runs WHERE job = ? ORDER BY scheduled_at", (job,)
    ).fetchall()
