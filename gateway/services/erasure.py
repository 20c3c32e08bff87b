"""Erasure of one contact's personal data from one tenant (GDPR art. 17).

The contact is a phone number (E.164, or national in the tenant's country) or an email
address, found in every form the timeline finds it in (`analytics.contact_forms`) and, for an
email address, in every case it is stored in (`Anne@x.fr` and `anne@x.fr`). One write
transaction scrubs the tenant's messages, their events, calls, appointments, prospects and
tickets of that contact and records the erasure (gateway/store/erasure.py says what becomes
what); then the engine reclaims what the transaction overwrote (`Engine.reclaim`).

Messages still queued to the contact are canceled: they would go to an erased address. A
message being sent right now, or whose outcome is being reconciled with its provider, and an
appointment still to come, make the erasure answer 409 instead: the first finish in seconds,
the second must be cancelled by the tenant (who tells the person), then the erasure is
repeated. Erasing again what is already erased answers 200 with zero counts, and is recorded
as well: the record says the request was honoured, whatever was left.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.errors import Conflict
from gateway.ids import new_id, now_iso
from gateway.services.analytics import contact_forms
from gateway.services.rollup_job import refresh_tenant
from gateway.store import erasure as store
from gateway.store.engine import DatabaseError, Engine
from gateway.store.tenant_scope import ScopedConnection, TenantDB

log = logging.getLogger("gateway.erasure")


def contact_of(raw: str, region: str | None) -> store.Contact:
    """The contact named by `raw`, or ValidationFailed (422) naming `contact`."""
    forms, is_phone = contact_forms(raw, region)
    return store.Contact(tuple(forms), is_phone)


async def erase_contact(tdb: TenantDB, raw: str, region: str | None = None) -> dict[str, Any]:
    contact = contact_of(raw, region)
    if not contact.is_phone:
        found = await store.stored_forms(tdb, contact.forms[0])
        contact = store.Contact(tuple(dict.fromkeys((*contact.forms, *found))), False)
    erasure_id, now = new_id("era"), now_iso()

    def write(conn: ScopedConnection) -> dict[str, int]:
        params = {**contact.params(erasure_id), "now": now}
        canceled = store.cancel_queued(conn, contact, params)
        blocked = store.blockers(conn, contact, params)
        if blocked.sending or blocked.upcoming_appointments:
            # raised inside the transaction: the cancellations above are undone with it
            raise Conflict(
                "The contact has messages being sent or upcoming appointments: cancel the "
                "appointments, wait for the sends, then erase again",
                code="contact_in_use",
                details={
                    "messages_in_flight": blocked.sending,
                    "upcoming_appointments": blocked.upcoming_appointments,
                },
            )
        counts = store.erase(conn, contact, erasure_id, now)
        counts["canceled_messages"] = canceled
        store.record(conn.raw, erasure_id, tdb.tenant_id, "contact", counts, now)
        return counts

    counts = await tdb.write_fn(write)
    touched = [table for table in store.TABLES if counts.get(table)]
    if touched:
        # the rollups keep each hour's recipients as hashes: the erased ones go now
        await refresh_tenant(tdb)
        await reclaim(tdb, touched)
    log.info(
        "contact erased",
        extra={"tenant_id": tdb.tenant_id, "erasure_id": erasure_id, "counts": counts},
    )
    return {
        "id": erasure_id,
        "kind": "contact",
        "created_at": now,
        "pseudonym": store.pseudonym(erasure_id),
        "counts": counts,
    }


async def reclaim(tdb: TenantDB, tables: list[str]) -> None:
    """The erasure committed whatever happens here: a failure is logged, not answered."""
    try:
        await tdb.db.reclaim(tables)
    except DatabaseError:
        log.exception("reclaiming the space of an erasure failed", extra={"tables": tables})


async def list_erasures(
    db: Engine, limit: int, *, kind: str | None = None, tenant_id: str | None = None
) -> list[dict[str, Any]]:
    return await store.list_erasures(db, limit, kind=kind, tenant_id=tenant_id)
