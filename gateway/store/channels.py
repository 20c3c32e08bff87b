"""SQL for channel configurations and the numbers that belong to them (tenant-scoped)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import concurrent_change
from gateway.ids import now_iso
from gateway.store.dialect import json_text
from gateway.store.engine import Connection, Engine, Row, UniqueViolation
from gateway.store.tenant_scope import ScopedConnection, TenantDB


class NumberTaken(Exception):
    """A number that cannot be this tenant's: another tenant's, or the operator's (the
    shared line, an operator sender): `reason` says which."""

    def __init__(self, number: str, reason: str = "another_tenant") -> None:
        super().__init__(number)
        self.number = number
        self.reason = reason


@dataclass
class ChannelRow:
    tenant_id: str
    channel_type: str
    enabled: bool
    settings: dict[str, Any]
    config_encrypted: str | None
    key_id: str | None
    last_error: str | None
    last_error_at: str | None
    updated_at: str
    secrets_version: int = 0

    @classmethod
    def from_row(cls, row: Row) -> ChannelRow:
        return cls(
            tenant_id=row["tenant_id"],
            channel_type=row["channel_type"],
            enabled=bool(row["enabled"]),
            settings=json.loads(row["settings"]),
            config_encrypted=row["config_encrypted"],
            key_id=row["key_id"],
            last_error=row["last_error"],
            last_error_at=row["last_error_at"],
            updated_at=row["updated_at"],
            secrets_version=row["secrets_version"],
        )


_COLUMNS = (
    "tenant_id, channel_type, enabled, settings, config_encrypted, key_id, last_error, "
    "last_error_at, updated_at, secrets_version"
)


async def get_channel(tdb: TenantDB, channel: str) -> ChannelRow:
    row = await tdb.fetchone(
        f"SELECT {_COLUMNS} FROM channel_configurations "
        "WHERE tenant_id = :tenant_id AND channel_type = :channel",
        {"channel": channel},
    )
    if row is None:  # every tenant has its four rows from creation on, until it is deleted
        raise concurrent_change()  # the tenant was deleted after the request's key was read
    return ChannelRow.from_row(row)


async def list_channels(tdb: TenantDB) -> list[ChannelRow]:
    rows = await tdb.fetchall(
        f"SELECT {_COLUMNS} FROM channel_configurations WHERE tenant_id = :tenant_id "
        "ORDER BY CASE channel_type WHEN 'phone' THEN 0 WHEN 'sms' THEN 1 "
        "WHEN 'email' THEN 2 ELSE 3 END",
    )
    return [ChannelRow.from_row(r) for r in rows]


class ConfigChanged(Exception):
    """The channel's secrets were rewritten by someone else since they were read."""


def save_channel(
    conn: ScopedConnection,
    channel: str,
    settings: dict[str, Any],
    config_encrypted: str | None,
    key_id: str | None,
    version: tuple[int, int],
    enabled: bool | None = None,
) -> None:
    """Store the settings and the secrets encrypted for `version` = (read, new): the write
    applies only if the row is still at the version the secrets were read at."""
    read, new = version
    changed = conn.execute(
        "UPDATE channel_configurations SET settings = :settings, "
        "config_encrypted = :enc, key_id = :key_id, secrets_version = :new, "
        "enabled = COALESCE(:enabled, enabled), updated_at = :now "
        "WHERE tenant_id = :tenant_id AND channel_type = :channel AND secrets_version = :read",
        {
            "settings": json.dumps(settings, sort_keys=True),
            "enc": config_encrypted,
            "key_id": key_id,
            "enabled": None if enabled is None else int(enabled),
            "now": now_iso(),
            "channel": channel,
            "read": read,
            "new": new,
        },
    ).rowcount
    if not changed:
        raise ConfigChanged(channel)


def set_enabled(conn: ScopedConnection, channel: str, enabled: bool) -> None:
    conn.execute(
        "UPDATE channel_configurations SET enabled = :enabled, updated_at = :now "
        "WHERE tenant_id = :tenant_id AND channel_type = :channel",
        {"enabled": int(enabled), "now": now_iso(), "channel": channel},
    )


def set_last_error(conn: ScopedConnection, channel: str, error: str | None) -> None:
    conn.execute(
        "UPDATE channel_configurations SET last_error = :error, last_error_at = :at "
        "WHERE tenant_id = :tenant_id AND channel_type = :channel",
        {"error": error, "at": None if error is None else now_iso(), "channel": channel},
    )


def sms_senders(conn: Connection) -> dict[str, str]:
    """The SMS sender the operator set for each tenant that has one: tenant id -> sender."""
    sender = json_text(conn.dialect, "settings", "sender")
    rows = conn.execute(
        f"SELECT tenant_id, {sender} AS sender "
        f"FROM channel_configurations WHERE channel_type = 'sms' AND {sender} IS NOT NULL"
    ).fetchall()
    return {r["tenant_id"]: r["sender"] for r in rows}


def replace_numbers(
    conn: ScopedConnection, kind: str, numbers: list[str], reserved: frozenset[str] = frozenset()
) -> None:
    """Make the tenant's numbers of one kind exactly `numbers`. NumberTaken when one is the
    operator's (`reserved`: the shared line and the other operator numbers, or an SMS sender
    the operator set — a forwarding number can never be one; a dedicated number may be its
    own tenant's sender only), or another tenant's (or this tenant's under the other kind)."""
    senders = sms_senders(conn.raw)
    for number in numbers:
        if number in reserved:
            raise NumberTaken(number, "operator_number")
        owners = {t for t, sender in senders.items() if sender == number}
        if owners and (kind == "forwarding" or owners - {conn.tenant_id}):
            raise NumberTaken(number, "operator_sender")
    conn.execute(
        "DELETE FROM tenant_numbers WHERE tenant_id = :tenant_id AND kind = :kind",
        {"kind": kind},
    )
    now = now_iso()
    for number in numbers:
        try:
            conn.execute(
                "INSERT INTO tenant_numbers (e164, tenant_id, kind, created_at) "
                "VALUES (:e164, :tenant_id, :kind, :now)",
                {"e164": number, "kind": kind, "now": now},
            )
        except UniqueViolation:
            raise NumberTaken(number) from None


def check_sender(conn: ScopedConnection, sender: str) -> None:
    """An SMS sender the operator sets must not be a number a tenant forwards from, nor a
    number dedicated to another tenant (inbound replies would reach the wrong tenant)."""
    row = conn.raw.execute(
        "SELECT tenant_id, kind FROM tenant_numbers WHERE e164 = ?", (sender,)
    ).fetchone()
    if row is not None and (row["kind"] == "forwarding" or row["tenant_id"] != conn.tenant_id):
        raise NumberTaken(sender, "another_tenant")


async def key_ids_in_use(db: Engine) -> set[str]:
    rows = await db.fetchall(
        "SELECT DISTINCT key_id FROM channel_configurations WHERE key_id IS NOT NULL"
    )
    return {r["key_id"] for r in rows}


async def encrypted_rows(db: Engine) -> list[Row]:
    return await db.fetchall(
        "SELECT tenant_id, channel_type, config_encrypted, key_id, secrets_version "
        "FROM channel_configurations WHERE config_encrypted IS NOT NULL"
    )


async def tenants_with_vapi_number(db: Engine, phone_number_id: str) -> list[Row]:
    """Tenants whose phone channel uses this Vapi phone number id, with their assistant."""
    assistant = json_text(db.dialect, "settings", "vapi_assistant_id")
    number = json_text(db.dialect, "settings", "vapi_phone_number_id")
    rows: list[Row] = await db.fetchall(
        f"SELECT tenant_id, enabled, {assistant} AS assistant_id "
        f"FROM channel_configurations WHERE channel_type = 'phone' AND {number} = ?",
        (phone_number_id,),
    )
    return rows


def reencrypt(
    conn: Connection,
    envelope: str,
    key_id: str,
    version: int,
    tenant_id: str,
    channel: str,
    old_envelope: str,
    old_version: int,
) -> int:
    """Replace a channel's secrets envelope only if it is still the one that was read
    (a concurrent save wins); returns the rows rewritten (0 or 1)."""
    rowcount: int = conn.execute(
        "UPDATE channel_configurations SET config_encrypted = ?, key_id = ?, "
        "secrets_version = ? WHERE tenant_id = ? AND channel_type = ? "
        "AND config_encrypted = ? AND secrets_version = ?",
        (envelope, key_id, version, tenant_id, channel, old_envelope, old_version),
    ).rowcount
    return rowcount
