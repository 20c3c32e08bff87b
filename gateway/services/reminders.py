"""Appointment confirmations and reminders, sent through the messaging pipeline.

A confirmation goes out after a booking on the tenant's SMS channel when it is enabled (else
WhatsApp), plus email when that channel is enabled and the contact gave an address. Reminders
go out 24 h and 1 h before. Exactly once, even across restarts: each message is accepted with
an idempotency key derived from the appointment (accepting twice returns the same message),
and only then is the appointment marked — a crash between the two is repaired by a later
tick, which gets the same message back. A tick claims each reminder before sending it (a
lease of `CLAIM_LEASE`), so ticks of several instances, even overlapping, share the work.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.errors import ApiError
from gateway.ids import iso, now_iso, parse_iso
from gateway.services.channel_config import ChannelConfigService
from gateway.services.messaging import Draft, MessagingService
from gateway.services.principal import TenantPrincipal
from gateway.services.templates import render
from gateway.store import reminders as store
from gateway.store import tenants as tenant_store
from gateway.store.engine import Connection, Engine, Row
from gateway.store.tenant_scope import TenantDB

log = logging.getLogger("gateway.reminders")

DEFAULT_TEXTS = {
    "confirmation": "Bonjour {name}, votre rendez-vous chez {business} est confirmé le {date} "
    "à {time}.",
    "reminder_24h": "Rappel : votre rendez-vous chez {business} est demain, {date} à {time}.",
    "reminder_1h": "Rappel : votre rendez-vous chez {business} est aujourd'hui à {time}.",
    "rescheduled": "Bonjour {name}, votre rendez-vous chez {business} est déplacé au {date} "
    "à {time}.",
}
# (kind, how long before the start it becomes due, until when before the start it is useful)
REMINDERS = (
    ("24h", timedelta(hours=24), timedelta(hours=1)),
    ("1h", timedelta(hours=1), timedelta(0)),
)
# how long a tick's claim on a reminder holds: past it, the tick is taken to have died and
# another may send the reminder (the same message, by its idempotency key)
CLAIM_LEASE = timedelta(minutes=5)


class Reminders:
    def __init__(
        self, db: Engine, channels: ChannelConfigService, messaging: MessagingService
    ) -> None:
        self.db = db
        self.channels = channels
        self.messaging = messaging

    async def _principal(self, tenant_id: str) -> TenantPrincipal | None:
        tenant = await tenant_store.get_tenant(self.db, tenant_id)
        if tenant is None:
            return None
        return TenantPrincipal(tenant, "system", TenantDB(self.db, tenant_id))

    async def _channels_for(self, principal: TenantPrincipal, has_email: bool) -> list[str]:
        chosen: list[str] = []
        for channel in ("sms", "whatsapp"):
            state = await self.channels.load(principal.db, channel)
            if state.row.enabled and not self.channels.missing(state):
                chosen.append(channel)
                break
        if has_email:
            state = await self.channels.load(principal.db, "email")
            if state.row.enabled and not self.channels.missing(state):
                chosen.append("email")
        return chosen

    async def _text(self, principal: TenantPrincipal, kind: str, fields: dict[str, str]) -> str:
        state = await self.channels.load(principal.db, "sms")
        templates = state.tenant_settings.get("templates") or {}
        text = templates.get(kind) or DEFAULT_TEXTS[kind]
        try:
            return render(text, fields)
        except ApiError:  # a tenant template with an unknown placeholder: use ours
            return render(DEFAULT_TEXTS[kind], fields)

    async def send(
        self, principal: TenantPrincipal, appointment: dict[str, Any], kind: str
    ) -> str | None:
        """Accept the confirmation or a reminder on each suitable channel; returns the id of
        the first message accepted (None when no channel can carry it)."""
        starts = parse_iso(appointment["starts_at"]).astimezone(ZoneInfo(principal.tenant.timezone))
        fields = {
            "name": appointment.get("customer_name") or "",
            "business": principal.tenant.name,
            "date": starts.strftime("%d/%m/%Y"),
            "time": starts.strftime("%H:%M"),
            "service": appointment.get("service") or "",
        }
        text = await self._text(principal, kind, fields)
        first: str | None = None
        message_type = (
            "transactional" if kind in ("confirmation", "rescheduled") else "appointment_reminder"
        )
        # the start is part of the key: a moved appointment gets new messages for its new
        # time, while a retry for the same time gets the same message back
        starts_at = appointment["starts_at"]
        for channel in await self._channels_for(principal, bool(appointment.get("customer_email"))):
            to = (
                appointment["customer_email"]
                if channel == "email"
                else appointment["customer_phone"]
            )
            draft = Draft(
                channel,
                to,
                body=text,
                message_type=message_type,
                subject=f"{principal.tenant.name} — rendez-vous" if channel == "email" else None,
                appointment_id=appointment["id"],
                call_id=appointment.get("call_id"),
                metadata={"appointment_id": appointment["id"], "kind": kind},
                request={
                    "appointment": appointment["id"],
                    "kind": kind,
                    "channel": channel,
                    "starts_at": starts_at,
                },
            )
            key = f"appointment:{appointment['id']}:{kind}:{starts_at}:{channel}"
            try:
                message, _ = await self.messaging.accept(principal, draft, key)
            except ApiError as exc:  # suppressed recipient, channel trouble: skip this one
                log.info(
                    "appointment message not sent",
                    extra={"kind": kind, "channel": channel, "reason": exc.code},
                )
                continue
            first = first or str(message["id"])
        return first

    async def confirm(
        self, tenant_id: str, appointment: dict[str, Any], rescheduled: bool = False
    ) -> None:
        """The confirmation of a booking, or of its new time when it was moved."""
        principal = await self._principal(tenant_id)
        if principal is None:
            return
        kind = "rescheduled" if rescheduled else "confirmation"
        message_id = await self.send(principal, appointment, kind)
        if message_id:
            await self.db.write_fn(
                lambda conn: store.mark_confirmation(conn, appointment["id"], message_id)
            )

    async def tick(self, now: datetime | None = None) -> int:
        """Send the reminders that are due; returns how many appointments were reminded.
        Each is claimed first (`store.claim_reminders`), so ticks running at once on
        several instances share the work instead of repeating it."""
        now = now or datetime.now(UTC)
        claimed_at, stale_before = iso(now), iso(now - CLAIM_LEASE)
        sent = 0
        for kind, before, until in REMINDERS:
            window = (iso(now + until), iso(now + before), int(before.total_seconds()))

            def claim(
                conn: Connection, k: str = kind, w: tuple[str, str, int] = window
            ) -> list[Row]:
                return store.claim_reminders(conn, k, *w, claimed_at, stale_before, 200)

            for row in await self.db.write_fn(claim):
                if await self._remind(dict(row), kind, claimed_at):
                    sent += 1
        return sent

    async def _remind(self, appointment: dict[str, Any], kind: str, claimed_at: str) -> bool:
        """Send one claimed reminder and mark it; a reminder nothing could carry is given
        back for the next tick."""
        appointment_id = appointment["id"]
        principal = await self._principal(appointment["tenant_id"])
        message_id = None
        if principal is not None:
            message_id = await self.send(principal, appointment, f"reminder_{kind}")
        if message_id is None:
            await self.db.write_fn(
                lambda conn: store.release_reminder(conn, appointment_id, kind, claimed_at)
            )
            return False
        starts_at = appointment["starts_at"]
        await self.db.write_fn(
            lambda conn: store.mark_reminder(
                conn, appointment_id, kind, message_id, now_iso(), starts_at
            )
        )
        return True
