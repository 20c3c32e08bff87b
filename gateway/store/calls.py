"""SQL for the call log.

A call is logged before its tenant is known (and stays without one when none is found), so
the writes here run on the raw connection in operator scope; a `ScopedConnection` or
`TenantDB` restricts them to one tenant. Reads for the tenant API go through `TenantDB`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.ids import new_id, now_iso
from gateway.message_states import CALL_RANK, call_sources
from gateway.store.dialect import json_text
from gateway.store.engine import Connection, Engine, Row
from gateway.store.paging import newest_first
from gateway.store.tenant_scope import ScopedConnection, TenantDB

# What the voice path and Vapi's server messages may change after the insert. Checked so a
# field name can never carry SQL into the statement.
UPDATABLE = frozenset(
    {
        "tenant_id",
        "vapi_call_id",
        "assistant_id",
        "from_number",
        "to_number",
        "forwarded_from",
        "resolved_by",
        "outcome",
        "status",
        "started_at",
        "ended_at",
        "duration_seconds",
        "provider_cost_usd",
        "exchange_rate_usd_eur",
        "provider_cost",
        "price_per_minute",
        "billed_minutes",
        "billed_cost",
        "margin",
        "currency",
        "ended_reason",
        "summary",
        "transcript",
        "recording_url",
        "metadata",
        "answer_twiml",
    }
)
_INSERT_FIELDS = (
    "tenant_id",
    "call_sid",
    "vapi_call_id",
    "assistant_id",
    "from_number",
    "to_number",
    "forwarded_from",
    "resolved_by",
    "outcome",
    "status",
    "price_per_minute",
    "metadata",
)
_PRIVATE = ("tenant_id", "answer_twiml")


@dataclass(frozen=True)
class LoggedCall:
    """The row a Twilio webhook landed on: `created` is False for a retried CallSid."""

    id: str
    created: bool
    vapi_call_id: str | None
    outcome: str | None
    tenant_id: str | None
    answer_twiml: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> LoggedCall:
        return cls(
            row["id"],
            False,
            row["vapi_call_id"],
            row["outcome"],
            row["tenant_id"],
            row["answer_twiml"],
        )


def insert_call(conn: Connection, fields: dict[str, Any]) -> LoggedCall:
    """Log an inbound call once per CallSid: a retry of the same CallSid finds the first row.

    The row is the claim on the call across instances. No statement fails on a retry, so the
    transaction stays usable on PostgreSQL: an insert racing another instance's waits for
    that one's commit, does nothing, and the SELECT after it (a new snapshot under READ
    COMMITTED) reads the winner's row."""
    values = {name: fields.get(name) for name in _INSERT_FIELDS}
    values["metadata"] = json.dumps(fields.get("metadata") or {})
    values["status"] = values["status"] or "ringing"
    now = now_iso()
    values.update(id=new_id("call"), created_at=now, updated_at=now)
    columns = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    # fetchall, not fetchone: a RETURNING statement left unfinished would keep the writer's
    # savepoint busy
    inserted = conn.execute(
        f"INSERT INTO call_logs ({columns}) VALUES ({marks}) "
        "ON CONFLICT (call_sid) DO NOTHING RETURNING id",
        values,
    ).fetchall()
    if inserted:
        return LoggedCall(inserted[0]["id"], True, None, None, values["tenant_id"])
    row = conn.execute(
        "SELECT id, vapi_call_id, outcome, tenant_id, answer_twiml FROM call_logs "
        "WHERE call_sid = ?",
        (values["call_sid"],),
    ).fetchone()
    return LoggedCall.from_row(row)


def insert_reported_call(conn: Connection, tenant_id: str, vapi_call_id: str) -> None:
    """Log a call Vapi reports that no voice webhook logged (a number imported into Vapi),
    once per Vapi call id: reports of one call may reach several instances at once, and the
    one that loses the race finds the winner's row."""
    now = now_iso()
    conn.execute(
        "INSERT INTO call_logs (id, tenant_id, vapi_call_id, status, metadata, created_at, "
        "updated_at) VALUES (?, ?, ?, 'ringing', '{}', ?, ?) "
        "ON CONFLICT (vapi_call_id) DO NOTHING",
        (new_id("call"), tenant_id, vapi_call_id, now, now),
    )


def update_call(conn: Connection | ScopedConnection, call_id: str, fields: dict[str, Any]) -> int:
    return _update(conn, "id", call_id, fields)


def update_call_by_vapi_id(
    conn: Connection | ScopedConnection, vapi_call_id: str, fields: dict[str, Any]
) -> int:
    return _update(conn, "vapi_call_id", vapi_call_id, fields)


def _update(
    conn: Connection | ScopedConnection, column: str, key: str, fields: dict[str, Any]
) -> int:
    """Update the call's fields; its status only as a conditional transition (the rule of
    gateway/message_states.py: an ended call stays ended whatever arrives late)."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"call_logs fields that cannot be updated: {sorted(unknown)}")
    fields = dict(fields)
    status = fields.pop("status", None)
    values = {f"v_{name}": value for name, value in fields.items()}
    if "metadata" in fields and not isinstance(fields["metadata"], str):
        values["v_metadata"] = json.dumps(fields["metadata"] or {})
    assignments = "".join(f"{name} = :v_{name}, " for name in fields)
    scope = " AND tenant_id = :tenant_id" if isinstance(conn, ScopedConnection) else ""
    params = {**values, "_now": now_iso(), "_key": key}
    found = conn.execute(
        f"UPDATE call_logs SET {assignments}updated_at = :_now WHERE {column} = :_key{scope}",
        params,
    ).rowcount
    if status is not None and found:
        allowed = call_sources(str(status))
        marks = ", ".join(f":_from{n}" for n in range(len(allowed))) or "NULL"
        known = ", ".join(f":_known{n}" for n in range(len(CALL_RANK)))
        conn.execute(
            f"UPDATE call_logs SET status = :_status WHERE {column} = :_key{scope} "
            f"AND (status IN ({marks}) OR status NOT IN ({known}))",
            {
                "_status": status,
                "_key": key,
                **({"tenant_id": conn.tenant_id} if isinstance(conn, ScopedConnection) else {}),
                **{f"_from{n}": s for n, s in enumerate(allowed)},
                **{f"_known{n}": s for n, s in enumerate(CALL_RANK)},
            },
        )
    return int(found)


def update_call_by_sid(conn: Connection, call_sid: str, fields: dict[str, Any]) -> int:
    return _update(conn, "call_sid", call_sid, fields)


def fill_call_by_sid(conn: Connection, call_sid: str, fields: dict[str, Any]) -> None:
    """Set the fields that are still empty (a later report does not overwrite an earlier)."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"call_logs fields that cannot be updated: {sorted(unknown)}")
    for name, value in fields.items():
        conn.execute(
            f"UPDATE call_logs SET {name} = COALESCE({name}, ?) WHERE call_sid = ?",
            (value, call_sid),
        )


async def get_call_by_vapi_id(db: Engine, vapi_call_id: str) -> Row | None:
    row: Row | None = await db.fetchone(
        "SELECT * FROM call_logs WHERE vapi_call_id = ?", (vapi_call_id,)
    )
    return row


async def get_call_by_sid(db: Engine, call_sid: str) -> Row | None:
    row: Row | None = await db.fetchone("SELECT * FROM call_logs WHERE call_sid = ?", (call_sid,))
    return row


async def get_call(tdb: TenantDB, call_id: str) -> Row | None:
    return await tdb.fetchone(
        "SELECT * FROM call_logs WHERE tenant_id = :tenant_id AND id = :id", {"id": call_id}
    )


async def tenants_for_assistant(db: Engine, assistant_id: str) -> list[str]:
    """The tenants whose phone channel uses this Vapi assistant (an operator may share one)."""
    assistant = json_text(db.dialect, "settings", "vapi_assistant_id")
    rows = await db.fetchall(
        "SELECT tenant_id FROM channel_configurations WHERE channel_type = 'phone' "
        f"AND {assistant} = ? ORDER BY tenant_id",
        (assistant_id,),
    )
    return [r["tenant_id"] for r in rows]


_FILTERS = (
    ("from_number", "from"),
    ("to_number", "to"),
    ("status", "status"),
    ("outcome", "outcome"),
    ("resolved_by", "resolved_by"),
    ("vapi_call_id", "vapi_call_id"),
)


async def list_calls(
    tdb: TenantDB, filters: dict[str, Any], limit: int, cursor: str | None
) -> list[Row]:
    """One page of the tenant's calls, newest first."""
    equal = {column: filters.get(key) for column, key in _FILTERS}
    return await newest_first(
        tdb,
        "call_logs",
        equal,
        limit,
        cursor,
        since=filters.get("since"),
        until=filters.get("until"),
    )


def public_call(row: Row | dict[str, Any]) -> dict[str, Any]:
    data = dict(row)
    data["metadata"] = json.loads(data.get("metadata") or "{}")
    data["from"] = data.pop("from_number")
    data["to"] = data.pop("to_number")
    for private in _PRIVATE:
        data.pop(private, None)
    return data
