"""SQL for appointments (the `rendez_vous` table), tenant-scoped.

Times are stored as ISO-8601 UTC text with milliseconds (`ids.iso`), so comparing them as
text compares the instants. The write helpers take a `ScopedConnection`: the booking service
runs check and insert inside one `write_fn`.

Several writers. A place is taken by counting the booked appointments that overlap it, then
inserting (or moving) one: two transactions that count at once would both see the last
place free. `lock_bookings` serialises them per tenant, taken first in every write that takes
a place. SQLite needs nothing: it runs one write transaction at a time. On PostgreSQL it is a
transaction-scoped advisory lock on the tenant, rather than `SELECT … FOR UPDATE` of the
tenant's row: a row lock FOR UPDATE also blocks every insert that checks a foreign key to
that tenant (its messages, calls, events: `FOR KEY SHARE`) and any update of the tenant; the
advisory lock guards booking alone, writes nothing, and is released at commit or rollback.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from gateway.domain.appointments import MAX_DURATION
from gateway.ids import iso, parse_iso
from gateway.store.engine import Row
from gateway.store.tenant_scope import ScopedConnection, TenantDB

_INSERT_COLUMNS = (
    "id",
    "tenant_id",
    "customer_name",
    "customer_phone",
    "customer_email",
    "service",
    "starts_at",
    "ends_at",
    "status",
    "source",
    "call_id",
    "notes",
    "created_at",
    "updated_at",
)
_UPDATABLE = frozenset(
    {
        "starts_at",
        "ends_at",
        "status",
        "notes",
        "updated_at",
        "cancelled_at",
        "reminder_24h_message_id",
        "reminder_24h_at",
        "reminder_1h_message_id",
        "reminder_1h_at",
    }
)
_PUBLIC = (
    "id",
    "customer_name",
    "customer_phone",
    "customer_email",
    "service",
    "starts_at",
    "ends_at",
    "status",
    "source",
    "call_id",
    "notes",
    "confirmation_message_id",
    "reminder_24h_message_id",
    "reminder_1h_message_id",
    "created_at",
    "updated_at",
    "cancelled_at",
)


def public_appointment(row: Row | dict[str, Any], tz: tzinfo) -> dict[str, Any]:
    """The appointment as the API shows it: start and end with the tenant's offset."""
    data = dict(row)
    out = {name: data.get(name) for name in _PUBLIC}
    starts, ends = parse_iso(data["starts_at"]), parse_iso(data["ends_at"])
    out["starts_at"] = starts.astimezone(tz).isoformat()
    out["ends_at"] = ends.astimezone(tz).isoformat()
    out["duration_minutes"] = int((ends - starts).total_seconds() // 60)
    return out


# -- inside a write transaction -----------------------------------------------------------

# the first key of the two-key advisory locks of booking: a space of their own, apart from
# the one-key (bigint) locks of migrations and message claims; the second key is the tenant's
_BOOKING_LOCKS = 0x626B  # "bk"


def lock_bookings(conn: ScopedConnection) -> None:
    """Until this transaction ends, no other write of this tenant takes a place: take it
    before `same_booking` and `count_overlapping`, so that they see every booking committed
    before. Two tenants whose ids hash alike share a lock: slower, never wrong."""
    if conn.dialect == "postgres":
        # READ COMMITTED: each later statement takes a fresh snapshot, and the previous
        # holder's commit is visible by the time its lock is released
        conn.execute(f"SELECT pg_advisory_xact_lock({_BOOKING_LOCKS}, hashtext(:tenant_id))")


def insert(conn: ScopedConnection, row: dict[str, Any]) -> None:
    values = {name: row.get(name) for name in _INSERT_COLUMNS if name != "tenant_id"}
    columns = ", ".join(_INSERT_COLUMNS)
    placeholders = ", ".join(f":{name}" for name in _INSERT_COLUMNS)
    conn.execute(f"INSERT INTO rendez_vous ({columns}) VALUES ({placeholders})", values)


def get_locked(conn: ScopedConnection, appointment_id: str) -> Row | None:
    """The appointment, which no other write changes until this transaction ends (SQLite:
    the one writer; PostgreSQL: its row locked, read as last committed)."""
    lock = " FOR UPDATE" if conn.dialect == "postgres" else ""
    row: Row | None = conn.execute(
        "SELECT * FROM rendez_vous WHERE tenant_id = :tenant_id AND id = :id" + lock,
        {"id": appointment_id},
    ).fetchone()
    return row


def same_booking(conn: ScopedConnection, phone: str, starts_at: str) -> Row | None:
    """The booked appointment of this phone at this start, if any (the idempotency key).
    Found before the caller's insert when `lock_bookings` was taken first; should the same
    booking commit in between all the same, the insert fails on ux_rendez_vous_same_booking
    (a UniqueViolation), which the caller answers like this one."""
    row: Row | None = conn.execute(
        "SELECT * FROM rendez_vous WHERE tenant_id = :tenant_id AND status = 'booked' "
        "AND customer_phone = :phone AND starts_at = :starts_at",
        {"phone": phone, "starts_at": starts_at},
    ).fetchone()
    return row


def _not_before(start: str) -> str:
    """No appointment lasts longer than MAX_DURATION, so one that overlaps [start, …) started
    after start - MAX_DURATION. Bounding starts_at on both sides keeps the index range to the
    period instead of the tenant's whole history (bench/RESULTS.md: 100,000 appointments)."""
    return iso(parse_iso(start) - MAX_DURATION)


def count_overlapping(
    conn: ScopedConnection, start: str, until: str, exclude_id: str | None = None
) -> int:
    """Booked appointments overlapping [start, until). The caller books when this is below
    capacity: still true when its insert commits only under `lock_bookings`."""
    params = {"start": start, "until": until, "not_before": _not_before(start)}
    if exclude_id is not None:
        params["exclude"] = exclude_id
    row = conn.execute(
        "SELECT COUNT(*) FROM rendez_vous WHERE tenant_id = :tenant_id AND status = 'booked' "
        "AND starts_at > :not_before AND starts_at < :until AND ends_at > :start"
        + ("" if exclude_id is None else " AND id != :exclude"),
        params,
    ).fetchone()
    return int(row[0])


def update(conn: ScopedConnection, appointment_id: str, fields: dict[str, Any]) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:  # column names are interpolated below: only known ones may pass
        raise ValueError(f"not updatable: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = :{name}" for name in fields)
    conn.execute(
        f"UPDATE rendez_vous SET {assignments} WHERE tenant_id = :tenant_id AND id = :_id",
        {**fields, "_id": appointment_id},
    )


# -- reads ----------------------------------------------------------------------------------


async def get(tdb: TenantDB, appointment_id: str) -> Row | None:
    return await tdb.fetchone(
        "SELECT * FROM rendez_vous WHERE tenant_id = :tenant_id AND id = :id",
        {"id": appointment_id},
    )


async def booked_between(tdb: TenantDB, start: str, until: str) -> list[tuple[str, str]]:
    """(starts_at, ends_at) of the booked appointments overlapping [start, until), by start."""
    rows = await tdb.fetchall(
        "SELECT starts_at, ends_at FROM rendez_vous WHERE tenant_id = :tenant_id "
        "AND status = 'booked' AND starts_at > :not_before AND starts_at < :until "
        "AND ends_at > :start ORDER BY starts_at",
        {"start": start, "until": until, "not_before": _not_before(start)},
    )
    return [(r["starts_at"], r["ends_at"]) for r in rows]


async def find_booked(
    tdb: TenantDB, phone: str, starts_at: str | None, not_before: str
) -> Row | None:
    """The booked appointment of this phone at `starts_at`, or, without a start, its next one
    that has not started before `not_before`."""
    if starts_at is not None:
        return await tdb.fetchone(
            "SELECT * FROM rendez_vous WHERE tenant_id = :tenant_id AND status = 'booked' "
            "AND customer_phone = :phone AND starts_at = :starts_at",
            {"phone": phone, "starts_at": starts_at},
        )
    return await tdb.fetchone(
        "SELECT * FROM rendez_vous WHERE tenant_id = :tenant_id AND status = 'booked' "
        "AND customer_phone = :phone AND starts_at >= :not_before ORDER BY starts_at, id LIMIT 1",
        {"phone": phone, "not_before": not_before},
    )


async def list_appointments(
    tdb: TenantDB, filters: dict[str, Any], limit: int, after: tuple[str, str] | None
) -> list[Row]:
    """Chronological by start (then id); `after` is the (starts_at, id) of the last row seen."""
    clauses = ["tenant_id = :tenant_id"]
    params: dict[str, Any] = {"limit": limit}
    if filters.get("status") is not None:
        clauses.append("status = :status")
        params["status"] = filters["status"]
    if filters.get("phone") is not None:
        clauses.append("customer_phone = :phone")
        params["phone"] = filters["phone"]
    if filters.get("from") is not None:
        clauses.append("starts_at >= :from_at")
        params["from_at"] = filters["from"]
    if filters.get("to") is not None:
        clauses.append("starts_at < :to_at")
        params["to_at"] = filters["to"]
    if after is not None:
        clauses.append(
            "(starts_at > :after_start OR (starts_at = :after_start AND id > :after_id))"
        )
        params["after_start"], params["after_id"] = after
    return await tdb.fetchall(
        "SELECT * FROM rendez_vous WHERE "
        + " AND ".join(clauses)
        + " ORDER BY starts_at, id LIMIT :limit",
        params,
    )
