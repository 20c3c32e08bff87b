"""SQL for the erasure of one contact's personal data from one tenant's rows, and the
record of erasures (`erasures`, 0011).

Rows are kept and scrubbed, never deleted: their money, counts, statuses and timestamps
stay, so invoices and KPIs do not change. Each stored form of the contact's address becomes
one pseudonym (`erased:<erasure id>`, the second form `…:2`) on every row that held it, so
`COUNT(DISTINCT to_address)` counts the same; texts (bodies, transcripts, notes, raw
payloads) become NULL or empty. Suppressions keep a hash of the address in its place: the
person stays opted out (`suppression_key`).

Every statement binds `:tenant_id` (a `ScopedConnection`): one tenant's erasure never
touches another tenant's rows, the same person's included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.store.engine import Connection, Engine, Row
from gateway.store.tenant_scope import ScopedConnection, TenantDB

# what an erasure touches, in the order of its counts
TABLES = (
    "channel_messages_log",
    "message_events",
    "call_logs",
    "rendez_vous",
    "qualified_prospects",
    "tickets",
    "suppressions",
)
ERASED_TEXT = "[erased]"


def suppression_key(tenant_id: str, address: str) -> str:
    """What a suppression holds instead of an erased address: a hash of it salted with the
    tenant, compared at every send (gateway/store/messages.py `suppression_for`)."""
    digest = hashlib.sha256(f"gateway-suppression\0{tenant_id}\0{address}".encode()).hexdigest()
    return f"sha256:{digest}"


@dataclass(frozen=True)
class Contact:
    """The forms a contact may be stored in (an E.164 number, or an email address as given
    and lowercased), and whether it is a phone number."""

    forms: tuple[str, ...]
    is_phone: bool

    def params(self, erasure_id: str) -> dict[str, Any]:
        params: dict[str, Any] = {f"c{i}": form for i, form in enumerate(self.forms)}
        params |= {f"p{i}": pseudonym(erasure_id, i) for i in range(len(self.forms))}
        params["lower"] = self.forms[0].lower()
        return params

    def any_of(self, column: str) -> str:
        return f"{column} IN ({', '.join(f':c{i}' for i in range(len(self.forms)))})"

    def renamed(self, column: str) -> str:
        """`column` with each form replaced by its pseudonym, anything else kept."""
        arms = " ".join(f"WHEN :c{i} THEN :p{i}" for i in range(len(self.forms)))
        return f"CASE {column} {arms} ELSE {column} END"

    def replaced_in(self, column: str) -> str:
        """Text `column` with each occurrence of a form replaced by its pseudonym."""
        text = column
        for i in range(len(self.forms)):
            text = f"REPLACE({text}, :c{i}, :p{i})"
        return text

    def owns(self, phone: str, email: str) -> str:
        """A CRM row of this contact: its phone, or its email in any case."""
        return self.any_of(phone) if self.is_phone else f"lower({email}) = :lower"


async def stored_forms(tdb: TenantDB, email: str) -> list[str]:
    """Every spelling of an email address (any case) the tenant's messages and suppressions
    hold. A scan of the tenant's rows (lower() has no index), on a read connection so writes
    do not wait for it; the erasure then finds each spelling by equality."""
    rows = await tdb.fetchall(
        "SELECT to_address FROM channel_messages_log WHERE tenant_id = :tenant_id "
        "AND lower(to_address) = :lower UNION SELECT from_address FROM channel_messages_log "
        "WHERE tenant_id = :tenant_id AND lower(from_address) = :lower "
        "UNION SELECT address FROM suppressions WHERE tenant_id = :tenant_id "
        "AND lower(address) = :lower",
        {"lower": email.lower()},
    )
    return sorted(str(row[0]) for row in rows)


def pseudonym(erasure_id: str, form: int = 0) -> str:
    return f"erased:{erasure_id}" + (f":{form + 1}" if form else "")


def _ids(contact: Contact, table: str, columns: tuple[str, ...]) -> str:
    """The ids of the tenant's rows of `table` holding a form of the contact in one of
    `columns`: one arm per (column, form), each an equality on an index of (tenant_id,
    column), rather than an OR, which SQLite answers by reading every row of the tenant.
    Statements select by these ids alone (the arms are tenant-scoped): a second
    `tenant_id = :tenant_id` outside would make SQLite walk the tenant's rows again."""
    return " UNION ".join(
        f"SELECT id FROM {table} WHERE tenant_id = :tenant_id AND {column} = :c{i}"
        for column in columns
        for i in range(len(contact.forms))
    )


def _message_ids(contact: Contact) -> str:
    return _ids(contact, "channel_messages_log", ("to_address", "from_address"))


def _call_ids(contact: Contact) -> str:
    # forwarded_from is the tenant's own business number: renamed if it is the contact's,
    # but not searched (it has no index)
    return _ids(contact, "call_logs", ("from_number", "to_number"))


def _messages(contact: Contact) -> str:
    return f"id IN ({_message_ids(contact)})"


def _calls(contact: Contact) -> str:
    return f"id IN ({_call_ids(contact)})"


@dataclass(frozen=True)
class Blockers:
    """What must finish before the contact can be erased."""

    sending: int
    upcoming_appointments: int


def cancel_queued(conn: ScopedConnection, contact: Contact, params: Mapping[str, Any]) -> int:
    """Messages not sent yet will never be: canceled (the dispatcher claims only queued rows,
    and the row lock held until commit keeps a concurrent claim off them)."""
    return conn.execute(
        "UPDATE channel_messages_log SET status = 'canceled', next_attempt_at = NULL, "
        "failure_reason = 'contact erased', updated_at = :now "
        f"WHERE {_messages(contact)} "
        "AND status = 'queued' AND needs_reconciliation = 0",
        params,
    ).rowcount


def blockers(conn: ScopedConnection, contact: Contact, params: Mapping[str, Any]) -> Blockers:
    sending = conn.execute(
        f"SELECT COUNT(*) FROM channel_messages_log WHERE {_messages(contact)} "
        "AND (status IN ('queued', 'sending') OR needs_reconciliation = 1)",
        params,
    ).fetchone()[0]
    upcoming = conn.execute(
        "SELECT COUNT(*) FROM rendez_vous WHERE tenant_id = :tenant_id "
        f"AND {contact.owns('customer_phone', 'customer_email')} "
        "AND status = 'booked' AND starts_at > :now",
        params,
    ).fetchone()[0]
    return Blockers(int(sending), int(upcoming))


def _crm(conn: ScopedConnection, contact: Contact, params: Mapping[str, Any]) -> dict[str, int]:
    """Appointments, prospects and tickets of the contact, or collected during its calls."""
    from_calls = ""
    if contact.is_phone:
        from_calls = f" OR call_id IN ({_call_ids(contact)})"
    counts = {}
    counts["rendez_vous"] = conn.execute(
        "UPDATE rendez_vous SET customer_name = :p0, customer_phone = :p0, "
        "customer_email = NULL, notes = NULL WHERE tenant_id = :tenant_id AND ("
        f"{contact.owns('customer_phone', 'customer_email')}{from_calls})",
        params,
    ).rowcount
    redacted = (
        "contact_name = NULL, "
        "contact_phone = CASE WHEN contact_phone IS NULL THEN NULL ELSE :p0 END, "
        "contact_email = CASE WHEN contact_email IS NULL THEN NULL ELSE :p0 END"
    )
    owned = f"tenant_id = :tenant_id AND ({contact.owns('contact_phone', 'contact_email')}"
    counts["qualified_prospects"] = conn.execute(
        f"UPDATE qualified_prospects SET {redacted}, location = NULL, notes = NULL "
        f"WHERE {owned}{from_calls})",
        params,
    ).rowcount
    counts["tickets"] = conn.execute(
        f"UPDATE tickets SET {redacted}, subject = '{ERASED_TEXT}', description = NULL "
        f"WHERE {owned}{from_calls})",
        params,
    ).rowcount
    return counts


def erase(conn: ScopedConnection, contact: Contact, erasure_id: str, now: str) -> dict[str, int]:
    """Scrub the contact from the tenant's rows; the rows touched, per table (TABLES)."""
    params = {**contact.params(erasure_id), "now": now}
    counts = dict.fromkeys(TABLES, 0)
    # events first: they are found through their messages' addresses, which change below
    counts["message_events"] = conn.execute(
        "UPDATE message_events SET payload = '{}' WHERE tenant_id = :tenant_id "
        f"AND message_id IN ({_message_ids(contact)})",
        params,
    ).rowcount
    counts["channel_messages_log"] = conn.execute(
        "UPDATE channel_messages_log SET "
        f"to_address = {contact.renamed('to_address')}, "
        f"from_address = {contact.renamed('from_address')}, "
        "subject = NULL, body = NULL, html_body = NULL, template = NULL, metadata = '{}', "
        f"failure_reason = {contact.replaced_in('failure_reason')}, "
        # a replay of the send's Idempotency-Key stays refused (409), and sends nothing
        "request_hash = CASE WHEN request_hash IS NULL THEN NULL ELSE 'erased' END "
        f"WHERE {_messages(contact)}",
        params,
    ).rowcount
    counts |= _crm(conn, contact, params)  # before the calls it finds rows through
    if contact.is_phone:
        counts["call_logs"] = conn.execute(
            "UPDATE call_logs SET "
            f"from_number = {contact.renamed('from_number')}, "
            f"to_number = {contact.renamed('to_number')}, "
            f"forwarded_from = {contact.renamed('forwarded_from')}, "
            "summary = NULL, transcript = NULL, recording_url = NULL, "
            f"answer_twiml = {contact.replaced_in('answer_twiml')}, "
            f"metadata = {contact.replaced_in('metadata')} "
            f"WHERE {_calls(contact)}",
            params,
        ).rowcount
    counts["suppressions"] = _suppressions(conn, contact)
    return counts


def _suppressions(conn: ScopedConnection, contact: Contact) -> int:
    touched = 0
    for form in contact.forms:
        key = {"address": form, "hashed": suppression_key(conn.tenant_id, form)}
        # a STOP after an earlier erasure of the same address: its hashed row is there
        conn.execute(
            "DELETE FROM suppressions WHERE tenant_id = :tenant_id AND address = :address "
            "AND EXISTS (SELECT 1 FROM suppressions AS erased WHERE erased.tenant_id = "
            ":tenant_id AND erased.channel = suppressions.channel "
            "AND erased.address = :hashed)",
            key,
        )
        touched += conn.execute(
            "UPDATE suppressions SET address = :hashed, detail = NULL "
            "WHERE tenant_id = :tenant_id AND address = :address",
            key,
        ).rowcount
    return touched


# -- the record ---------------------------------------------------------------------------


def record(
    conn: Connection,
    erasure_id: str,
    tenant_id: str | None,
    kind: str,
    counts: Mapping[str, int],
    now: str,
    older_than: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO erasures (id, tenant_id, kind, older_than, counts, created_at) "
        "VALUES (:id, :tenant_id, :kind, :older_than, :counts, :created_at)",
        {
            "id": erasure_id,
            "tenant_id": tenant_id,
            "kind": kind,
            "older_than": older_than,
            "counts": json.dumps(dict(counts)),
            "created_at": now,
        },
    )


def public(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "tenant_id": row["tenant_id"],
        "kind": row["kind"],
        "older_than": row["older_than"],
        "counts": json.loads(row["counts"]),
        "created_at": row["created_at"],
    }


async def list_erasures(
    db: Engine, limit: int, *, kind: str | None = None, tenant_id: str | None = None
) -> list[dict[str, Any]]:
    """The newest first (the operator's view: every tenant)."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if kind is not None:
        where.append("kind = :kind")
        params["kind"] = kind
    if tenant_id is not None:
        where.append("tenant_id = :tenant_id")
        params["tenant_id"] = tenant_id
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    rows = await db.fetchall(
        f"SELECT * FROM erasures {clause}ORDER BY created_at DESC, id DESC LIMIT :limit", params
    )
    return [public(row) for row in rows]
