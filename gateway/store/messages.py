"""SQL for the message log, its events and suppressions."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from gateway.ids import iso, new_id, now_iso, parse_iso
from gateway.message_states import FINAL, MESSAGE_RANK, UNFINISHED, sources
from gateway.store.dialect import same
from gateway.store.engine import Connection, Dialect, Engine, Row
from gateway.store.erasure import suppression_key
from gateway.store.paging import newest_first
from gateway.store.tenant_scope import ScopedConnection, TenantDB

__all__ = ["FINAL", "STATUS_RANK", "UNFINISHED"]

STATUS_RANK = MESSAGE_RANK  # the ladder, gateway/message_states.py

_INSERT_COLUMNS = (
    "id",
    "tenant_id",
    "channel",
    "direction",
    "to_address",
    "from_address",
    "subject",
    "body",
    "html_body",
    "template",
    "message_type",
    "agent",
    "status",
    "provider",
    "provider_message_id",
    "provider_status",
    "encoding",
    "character_count",
    "num_segments",
    "price_per_unit",
    "billed_cost",
    "provider_cost",
    "margin",
    "currency",
    "idempotency_key",
    "request_hash",
    "next_attempt_at",
    "send_at",
    "call_id",
    "appointment_id",
    "metadata",
    "created_at",
    "updated_at",
    "sent_at",
    "delivered_at",
    "attempts",
    "attempted_at",
)


def insert_message(conn: ScopedConnection, row: dict[str, Any]) -> None:
    values = {name: row.get(name) for name in _INSERT_COLUMNS if name != "tenant_id"}
    values["metadata"] = json.dumps(row.get("metadata") or {})
    values["attempts"] = row.get("attempts") or 0
    if row.get("template") is not None:
        values["template"] = json.dumps(row["template"])
    columns = ", ".join(_INSERT_COLUMNS)
    placeholders = ", ".join(f":{name}" for name in _INSERT_COLUMNS)
    conn.execute(f"INSERT INTO channel_messages_log ({columns}) VALUES ({placeholders})", values)


def inserted_message(conn: ScopedConnection, message_id: str) -> Row:
    row: Row = conn.execute(
        "SELECT * FROM channel_messages_log WHERE tenant_id = :tenant_id AND id = :id",
        {"id": message_id},
    ).fetchone()
    return row


def insert_event(
    conn: Connection | ScopedConnection,
    message_id: str,
    tenant_id: str,
    source: str,
    status: str | None,
    applied: bool,
    payload: dict[str, Any],
) -> None:
    raw = conn.raw if isinstance(conn, ScopedConnection) else conn
    raw.execute(
        "INSERT INTO message_events "
        "(id, message_id, tenant_id, source, status, applied, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id("evt"),
            message_id,
            tenant_id,
            source,
            status,
            int(applied),
            json.dumps(payload),
            now_iso(),
        ),
    )


def public_message(row: Row | dict[str, Any]) -> dict[str, Any]:
    # dict(row) looks every column up by name (a scan of ~50 names each): zip is linear
    data = dict(row) if isinstance(row, dict) else dict(zip(row.keys(), row, strict=True))
    reconcile = bool(data.get("needs_reconciliation"))
    data["metadata"] = json.loads(data.get("metadata") or "{}")
    if data.get("template"):
        data["template"] = json.loads(data["template"])
    data["to"] = data.pop("to_address")
    data["from"] = data.pop("from_address")
    for private in (
        "request_hash",
        "price_checks",
        "price_due_at",
        "needs_reconciliation",
        "next_attempt_at",
        "tenant_id",
    ):
        data.pop(private, None)
    data["needs_reconciliation"] = reconcile
    return data


async def get_message(tdb: TenantDB, message_id: str) -> Row | None:
    return await tdb.fetchone(
        "SELECT * FROM channel_messages_log WHERE tenant_id = :tenant_id AND id = :id",
        {"id": message_id},
    )


_BY_IDEMPOTENCY_KEY = (
    "SELECT * FROM channel_messages_log WHERE tenant_id = :tenant_id AND idempotency_key = :key"
)


async def get_by_idempotency_key(tdb: TenantDB, key: str) -> Row | None:
    return await tdb.fetchone(_BY_IDEMPOTENCY_KEY, {"key": key})


def idempotent_message(conn: ScopedConnection, key: str) -> Row | None:
    """`get_by_idempotency_key` inside a write transaction."""
    row: Row | None = conn.execute(_BY_IDEMPOTENCY_KEY, {"key": key}).fetchone()
    return row


async def list_events(tdb: TenantDB, message_id: str) -> list[dict[str, Any]]:
    rows = await tdb.fetchall(
        "SELECT id, source, status, applied, payload, created_at FROM message_events "
        "WHERE tenant_id = :tenant_id AND message_id = :id ORDER BY created_at, id",
        {"id": message_id},
    )
    return [
        {**dict(r), "applied": bool(r["applied"]), "payload": json.loads(r["payload"])}
        for r in rows
    ]


async def list_messages(
    tdb: TenantDB, filters: dict[str, Any], limit: int, before: str | None
) -> list[Row]:
    equal = {
        "channel": filters.get("channel"),
        "status": filters.get("status"),
        "to_address": filters.get("to"),
        "message_type": filters.get("message_type"),
        "direction": filters.get("direction"),
    }
    return await newest_first(
        tdb,
        "channel_messages_log",
        equal,
        limit,
        before,
        since=filters.get("since"),
        until=filters.get("until"),
    )


_SUPPRESSION = (
    "SELECT reason, detail, created_at FROM suppressions WHERE tenant_id = :tenant_id "
    # an erased contact's suppression holds a hash of the address (gateway/store/erasure.py)
    "AND channel = :channel AND address IN (:address, :hashed)"
)


async def suppression_for(tdb: TenantDB, channel: str, address: str) -> Row | None:
    hashed = suppression_key(tdb.tenant_id, address)
    return await tdb.fetchone(
        _SUPPRESSION, {"channel": channel, "address": address, "hashed": hashed}
    )


def suppression_in(conn: ScopedConnection, channel: str, address: str) -> Row | None:
    """`suppression_for` inside a write transaction."""
    hashed = suppression_key(conn.tenant_id, address)
    row: Row | None = conn.execute(
        _SUPPRESSION, {"channel": channel, "address": address, "hashed": hashed}
    ).fetchone()
    return row


def add_suppression(
    conn: Connection,
    tenant_id: str,
    channel: str,
    address: str,
    reason: str,
    detail: str | None,
) -> None:
    conn.execute(
        "INSERT INTO suppressions (id, tenant_id, channel, address, reason, detail, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, channel, address) DO NOTHING",
        (new_id("sup"), tenant_id, channel, address, reason, detail, now_iso()),
    )


def remove_suppression(conn: Connection, tenant_id: str, channel: str, address: str) -> None:
    conn.execute(
        "DELETE FROM suppressions WHERE tenant_id = ? AND channel = ? AND address IN (?, ?) "
        "AND reason = 'stop_keyword'",
        (tenant_id, channel, address, suppression_key(tenant_id, address)),
    )


# -- dispatcher (operator scope: the dispatcher serves every tenant) --------------------------


# A due message is held back while one of its twins (same provider, recipient, sender and
# text: messages the provider cannot tell apart) is being sent or reconciled, so at most one
# twin's outcome is ever unknown at a time and a lost answer can always be matched to it
# (gateway/services/reconcile.py).
#
# A claimed message is leased: `next_attempt_at` of a `sending` row is when its claim runs
# out unless the claiming instance renews it (`renew_leases`). A lease that ran out means the
# instance died (or froze) with the send in flight: the row is due again, and whoever claims
# it next reconciles it (looks it up at the provider), never sends it blindly.
def _due_sql(dialect: Dialect) -> str:
    # PostgreSQL: rows another transaction is claiming are skipped, not waited for
    lock = " FOR UPDATE OF m SKIP LOCKED" if dialect == "postgres" else ""
    return f"""
SELECT * FROM channel_messages_log m
WHERE m.status IN ('queued', 'sending') AND m.next_attempt_at IS NOT NULL
  AND m.next_attempt_at <= :now
  AND (m.status = 'sending' OR NOT EXISTS ({_twin_sending_sql(dialect)}))
  AND (m.status = 'sending' OR EXISTS ({_TENANT_ACTIVE}))
ORDER BY m.next_attempt_at LIMIT :limit{lock}
"""


# A suspended tenant's queued messages stay queued (not failed) until it is resumed; a send
# already in flight is still settled or reconciled.
_TENANT_ACTIVE = "SELECT 1 FROM tenants a WHERE a.id = m.tenant_id AND a.status = 'active'"


def _twin_sending_sql(dialect: Dialect) -> str:
    return f"""
    SELECT 1 FROM channel_messages_log t
    WHERE t.to_address = m.to_address AND t.channel = m.channel AND t.status = 'sending'
      AND t.provider_message_id IS NULL AND t.id != m.id
      AND {same(dialect, "t.provider", "m.provider")}
      AND {same(dialect, "t.from_address", "m.from_address")}
      AND {same(dialect, "t.body", "m.body")}"""


_DUE: dict[Dialect, str] = {"sqlite": _due_sql("sqlite"), "postgres": _due_sql("postgres")}

# PostgreSQL, several writers: two instances can each select a different twin of one group
# (neither sees the other's uncommitted claim). A transaction-scoped advisory lock per twin
# group serialises them: a group locked by another claim right now is skipped, and once the
# lock is ours, a fresh statement sees any twin claimed and committed before.
_GROUP_LOCKS = """
WITH picked AS MATERIALIZED (
  SELECT id, provider, to_address, from_address, body, channel
  FROM channel_messages_log WHERE id = ANY(:ids))
SELECT id FROM picked WHERE pg_try_advisory_xact_lock(hashtextextended(
  concat_ws(chr(31), provider, to_address, from_address, body, channel), 7))
"""
_STILL_ALONE = f"""
SELECT m.id FROM channel_messages_log m
WHERE m.id = ANY(:ids) AND NOT EXISTS ({_twin_sending_sql("postgres")})
"""

DEFAULT_LEASE_SECONDS = 60.0


def claim_due(
    conn: Connection,
    now: str,
    limit: int,
    lease_until: str | None = None,
    claim_id: str | None = None,
) -> list[Row]:
    """Take up to `limit` due messages, leased until `lease_until` (default: a minute after
    `now`) under a new claim (`claim_id`, in each returned row): queued ones become
    `sending` (attempt counted, its start recorded); `sending` ones are returned flagged for
    reconciliation — those waiting for it, and those whose lease ran out. Of twins due
    together only the first is taken.

    Safe with several writers: on SQLite one write transaction runs at a time, so nothing
    claims between the select and the update; on PostgreSQL the select locks the rows it
    returns and skips those another claim holds, and twin groups are locked as above."""
    until = lease_until or later_than(now, DEFAULT_LEASE_SECONDS)
    claim = claim_id or new_claim_id()
    rows = conn.execute(_DUE[conn.dialect], {"now": now, "limit": limit}).fetchall()
    chosen: list[Row] = []
    groups: set[tuple[Any, ...]] = set()
    for row in rows:
        group = (row["provider"], row["to_address"], row["from_address"], row["body"])
        if group in groups:
            continue
        groups.add(group)
        chosen.append(row)
    if chosen and conn.dialect == "postgres":
        chosen = _alone_in_their_group(conn, chosen)
    if not chosen:
        return []
    ids = [r["id"] for r in chosen]
    claimed = conn.execute(
        "UPDATE channel_messages_log SET "
        "attempts = attempts + CASE WHEN status = 'queued' THEN 1 ELSE 0 END, "
        "attempted_at = CASE WHEN status = 'queued' THEN :now ELSE attempted_at END, "
        "needs_reconciliation = CASE WHEN status = 'sending' THEN 1 "
        "ELSE needs_reconciliation END, "
        "status = 'sending', next_attempt_at = :until, claim_id = :claim, updated_at = :now "
        f"WHERE id IN ({', '.join(f':id{n}' for n in range(len(ids)))}) "
        "AND status IN ('queued', 'sending') RETURNING *",
        {
            "now": now,
            "until": until,
            "claim": claim,
            **{f"id{n}": i for n, i in enumerate(ids)},
        },
    ).fetchall()
    for row in chosen:
        if row["status"] == "sending" and not row["needs_reconciliation"]:
            # the instance that claimed it stopped renewing: it died or froze mid-send
            insert_event(
                conn,
                row["id"],
                row["tenant_id"],
                "dispatcher",
                "sending",
                True,
                {"reconcile": True, "error": "the claim of another instance ran out"},
            )
    # what the dispatcher works with: the rows as claimed, in the order they were due
    order = {message_id: n for n, message_id in enumerate(ids)}
    return sorted(claimed, key=lambda r: order[r["id"]])


def _alone_in_their_group(conn: Connection, chosen: list[Row]) -> list[Row]:
    queued = [r["id"] for r in chosen if r["status"] == "queued"]
    if not queued:
        return chosen
    locked = {r[0] for r in conn.execute(_GROUP_LOCKS, {"ids": queued}).fetchall()}
    alone = {r[0] for r in conn.execute(_STILL_ALONE, {"ids": sorted(locked)}).fetchall()}
    return [r for r in chosen if r["status"] == "sending" or r["id"] in alone]


def later_than(instant: str, seconds: float) -> str:
    """The stored form of `seconds` after the stored instant `instant`."""
    return iso(parse_iso(instant) + timedelta(seconds=seconds))


def new_claim_id(instance: str | None = None) -> str:
    """A new claim's id; it names the instance that holds it (`clm_<host:pid>_<ulid>`), so
    an operator (and a test) can tell whose claims are in flight."""
    return f"clm_{instance}_{new_id('x')[2:]}" if instance else new_id("clm")


def renew_leases(conn: Connection, claims: Mapping[str, str], until: str) -> set[str]:
    """Extend the leases of the claims an instance still works on (message id -> claim id);
    returns the ids renewed. A claim another instance took over since (its lease had run
    out) has another claim id now and is not renewed, so the instance that lost it learns
    it."""
    if not claims:
        return set()
    params: dict[str, Any] = {"until": until}
    wanted = []
    for n, (message_id, claim) in enumerate(claims.items()):
        params[f"i{n}"], params[f"c{n}"] = message_id, claim
        wanted.append(f"(id = :i{n} AND claim_id = :c{n})")
    rows = conn.execute(
        "UPDATE channel_messages_log SET next_attempt_at = :until "
        f"WHERE status = 'sending' AND ({' OR '.join(wanted)}) RETURNING id",
        params,
    ).fetchall()
    return {r[0] for r in rows}


def claim_held(
    conn: Connection, message_id: str, now: str, lease_until: str, claim_id: str | None = None
) -> list[Row]:
    """Take one held message (queued, not due: a channel test) for an attempt now, under a
    new claim leased until `lease_until`."""
    return conn.execute(
        "UPDATE channel_messages_log SET status = 'sending', attempts = attempts + 1, "
        "attempted_at = :now, updated_at = :now, next_attempt_at = :until, claim_id = :claim "
        "WHERE id = :id AND status = 'queued' AND next_attempt_at IS NULL RETURNING *",
        {"id": message_id, "now": now, "until": lease_until, "claim": claim_id or new_claim_id()},
    ).fetchall()


def recover_in_flight(conn: Connection, now: str, *, only_process: bool) -> int:
    """At start-up: flag for reconciliation the sends that have an unknown outcome.

    `only_process`: this process is the only one serving the database (SQLite, whose
    serving process holds the file): every send still in flight was a dead process's, and
    is taken now rather than when its lease runs out. Otherwise (PostgreSQL, where other
    instances are live) only claims without a lease, left by a version that had none."""
    live = "" if only_process else " AND next_attempt_at IS NULL"
    return conn.execute(
        "UPDATE channel_messages_log SET needs_reconciliation = 1, next_attempt_at = ?, "
        "updated_at = ? WHERE status = 'sending' AND (needs_reconciliation = 0 "
        f"OR next_attempt_at IS NULL){live}",
        (now, now),
    ).rowcount


def move(
    conn: Connection,
    message_id: str,
    status: str,
    fields: dict[str, Any] | None = None,
    *,
    only_from: frozenset[str] | None = None,
    fill: dict[str, Any] | None = None,
    claim: str | None = None,
) -> bool:
    """The one way a message's status changes: set `status` (and `fields` with it; `fill`
    only where still empty) only when the rule of gateway/message_states.py allows the move
    from the status the row has now, in the database, at the moment of the write. Returns
    whether the move applied.

    A move back to `queued` also needs the row to have no provider message id: once a
    provider has taken a message, it is never sent again. `claim`: only while the row is
    still under that claim (a dispatcher's write on behalf of its claim)."""
    allowed = sources(status, only_from)
    if not allowed:
        return False
    values = {**(fields or {}), "status": status}
    extra = fill or {}
    sql = _move_sql(status, tuple(values), tuple(extra), allowed, claim is not None)
    params = {**values, **{f"_fill_{k}": v for k, v in extra.items()}, "_id": message_id}
    if claim is not None:
        params["_claim"] = claim
    return bool(conn.execute(sql, params).rowcount)


@functools.lru_cache(maxsize=256)
def _move_sql(
    status: str,
    names: tuple[str, ...],
    filled: tuple[str, ...],
    allowed: tuple[str, ...],
    claimed: bool,
) -> str:
    assignments = [f"{name} = :{name}" for name in names]
    assignments += [f"{name} = COALESCE({name}, :_fill_{name})" for name in filled]
    marks = ", ".join(f"'{s}'" for s in allowed)  # statuses of our own ladder, not input
    guard = " AND provider_message_id IS NULL" if status == "queued" else ""
    if claimed:
        guard += " AND claim_id = :_claim"
    return (
        f"UPDATE channel_messages_log SET {', '.join(assignments)} "
        f"WHERE id = :_id AND status IN ({marks}){guard}"
    )


def current_status(conn: Connection, message_id: str) -> str | None:
    row = conn.execute(
        "SELECT status FROM channel_messages_log WHERE id = ?", (message_id,)
    ).fetchone()
    return str(row[0]) if row else None


def update_message(conn: Connection, message_id: str, fields: dict[str, Any]) -> None:
    """Fields other than the status (money, provider details, bookkeeping)."""
    if "status" in fields:
        raise ValueError("a status is changed with move(), which checks the transition")
    if not fields:
        return
    assignments = ", ".join(f"{name} = :{name}" for name in fields)
    conn.execute(
        f"UPDATE channel_messages_log SET {assignments} WHERE id = :_id",
        {**fields, "_id": message_id},
    )


def queue_depth(conn: Connection) -> int:
    row = conn.execute(
        "SELECT COUNT(*) FROM channel_messages_log WHERE status IN ('queued', 'sending')"
    ).fetchone()
    return int(row[0])


def find_by_provider_id(conn: Connection, provider: str, provider_message_id: str) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT * FROM channel_messages_log WHERE provider = ? AND provider_message_id = ?",
        (provider, provider_message_id),
    ).fetchone()
    return row


def find_by_id(conn: Connection, message_id: str) -> Row | None:
    row: Row | None = conn.execute(
        "SELECT * FROM channel_messages_log WHERE id = ?", (message_id,)
    ).fetchone()
    return row


def price_due(conn: Connection, now: str, limit: int) -> list[Row]:
    """Messages whose provider price is due to be asked for, taken (due time cleared) in
    one transaction: on PostgreSQL the rows are locked, and rows another writer is taking
    are skipped, so each is handed out once whatever the number of writers."""
    return _take_due(conn, "price_due_at", now, limit)


def _take_due(conn: Connection, column: str, now: str, limit: int) -> list[Row]:
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgres" else ""
    rows = conn.execute(
        f"SELECT * FROM channel_messages_log WHERE {column} IS NOT NULL "
        f"AND {column} <= ? ORDER BY {column} LIMIT ?{lock}",
        (now, limit),
    ).fetchall()
    ids: Sequence[str] = [r["id"] for r in rows]
    if ids:
        marks = ", ".join("?" for _ in ids)
        conn.execute(f"UPDATE channel_messages_log SET {column} = NULL WHERE id IN ({marks})", ids)
    return rows


def adopted_provider_ids(
    conn: Connection, provider: str, ids: list[str], except_id: str
) -> set[str]:
    """Which of these provider ids already belong to another message."""
    if not ids:
        return set()
    marks = ", ".join("?" for _ in ids)
    rows = conn.execute(
        "SELECT provider_message_id FROM channel_messages_log WHERE provider = ? "
        f"AND provider_message_id IN ({marks}) AND id != ?",
        (provider, *ids, except_id),
    ).fetchall()
    return {r[0] for r in rows}


def holder_of(conn: Connection, provider: str, provider_message_id: str) -> str | None:
    """The message that holds this provider id, if any."""
    row = conn.execute(
        "SELECT id FROM channel_messages_log WHERE provider = ? AND provider_message_id = ?",
        (provider, provider_message_id),
    ).fetchone()
    return str(row[0]) if row else None


def tenant_of(conn: Connection, message_id: str) -> str:
    row = conn.execute(
        "SELECT tenant_id FROM channel_messages_log WHERE id = ?", (message_id,)
    ).fetchone()
    return str(row[0])


def exchange_provider_id(
    conn: Connection, provider_message_id: str, *, holder: str, owner: str, now: str
) -> None:
    """A status callback proved that `provider_message_id`, which a reconciliation gave to
    `holder`, is `owner`'s send: `owner` takes it and `holder` takes whatever id `owner` had.

    The one write that may move a status down: a holder left without any id was only
    `sent` on a guess, so it goes back to `sending` and is reconciled again (which sends it
    if the provider holds nothing for it). A final status, reported for that id, stays."""
    swapped = conn.execute(
        "SELECT provider_message_id FROM channel_messages_log WHERE id = ?", (owner,)
    ).fetchone()[0]
    conn.execute(
        "UPDATE channel_messages_log SET provider_message_id = NULL WHERE id = ?", (owner,)
    )
    if swapped is not None:
        conn.execute(
            "UPDATE channel_messages_log SET provider_message_id = ?, updated_at = ? WHERE id = ?",
            (swapped, now, holder),
        )
    else:
        conn.execute(
            "UPDATE channel_messages_log SET provider_message_id = NULL, poll_due_at = NULL, "
            "status = CASE WHEN status IN ('sending', 'sent') THEN 'sending' ELSE status END, "
            "needs_reconciliation = CASE WHEN status IN ('sending', 'sent') THEN 1 "
            "ELSE needs_reconciliation END, "
            "next_attempt_at = CASE WHEN status IN ('sending', 'sent') THEN ? "
            "ELSE next_attempt_at END, updated_at = ? WHERE id = ?",
            (now, now, holder),
        )
    conn.execute(
        "UPDATE channel_messages_log SET provider_message_id = ? WHERE id = ?",
        (provider_message_id, owner),
    )


def unsettled_twins(
    conn: Connection, provider: str, to: str, sender: str | None, body: str | None
) -> list[Row]:
    """Unfinished outbound messages, any tenant, that a provider could not tell apart from
    each other: same provider, recipient, sender and text, no provider id yet."""
    return conn.execute(
        "SELECT id, status, needs_reconciliation, attempted_at, created_at "
        "FROM channel_messages_log WHERE to_address = ? AND provider = ? "
        "AND direction = 'outbound' AND status IN ('queued', 'sending') "
        f"AND provider_message_id IS NULL AND {same(conn.dialect, 'from_address', '?')} "
        f"AND {same(conn.dialect, 'body', '?')} "
        "ORDER BY attempted_at, created_at, id",
        (to, provider, sender, body),
    ).fetchall()


def poll_due(conn: Connection, now: str, limit: int) -> list[Row]:
    """Messages a provider took whose final status has not come: to ask the provider
    (taken as `price_due` takes them)."""
    return _take_due(conn, "poll_due_at", now, limit)


async def recent_tenants_for_recipient(
    db: Engine, channel: str, address: str, sender: str | None = None
) -> list[str]:
    """The tenants that wrote to `address` on `channel` (from `sender` when given), most
    recent first."""
    params: tuple[str, ...] = (channel, address) if sender is None else (channel, address, sender)
    rows = await db.fetchall(
        "SELECT tenant_id, MAX(created_at) AS last FROM channel_messages_log "
        "WHERE channel = ? AND to_address = ? AND direction = 'outbound' "
        + ("" if sender is None else "AND from_address = ? ")
        + "GROUP BY tenant_id ORDER BY last DESC",
        params,
    )
    return [r["tenant_id"] for r in rows]


def switch_provider(
    conn: Connection,
    message_id: str,
    old: str,
    new: str,
    from_address: str | None,
    now: str,
    claim: str | None,
) -> Row | None:
    """Hand a message being sent to another provider (failover), before the request leaves;
    only while it is this attempt's (this claim's), with no outcome to reconcile. Returns
    the row as it is now, None when it was not switched."""
    row: Row | None = conn.execute(
        "UPDATE channel_messages_log SET provider = ?, from_address = ?, updated_at = ? "
        "WHERE id = ? AND provider = ? AND status = 'sending' AND needs_reconciliation = 0 "
        f"AND provider_message_id IS NULL AND {same(conn.dialect, 'claim_id', '?')} "
        "RETURNING *",
        (new, from_address, now, message_id, old, claim),
    ).fetchone()
    return row


def settle_sent(conn: Connection, message_id: str, provider_message_id: str) -> None:
    """A send a status report already moved past `sent`: nothing is left to reconcile, and
    it keeps the provider id it has (or takes this one)."""
    conn.execute(
        "UPDATE channel_messages_log SET needs_reconciliation = 0, "
        "provider_message_id = COALESCE(provider_message_id, ?) WHERE id = ?",
        (provider_message_id, message_id),
    )
