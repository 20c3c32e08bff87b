"""What providers tell us after their signature was checked: status reports and inbound
messages, applied idempotently."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.domain.messages import InboundMessage, StatusReport
from gateway.ids import new_id, now_iso
from gateway.metrics import Metrics
from gateway.services.exchange import ExchangeRates
from gateway.services.message_status import Applied, apply_report
from gateway.store import messages as store
from gateway.store import tenants as tenant_store
from gateway.store.engine import Connection, Engine
from gateway.store.tenant_scope import ScopedConnection
from gateway.validation import normalize_e164

log = logging.getLogger("gateway.webhooks")

STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})


def _never(provider: str | None) -> bool:
    return False


class InboundService:
    def __init__(
        self,
        db: Engine,
        metrics: Metrics,
        price_delay: float,
        poll_delay: float | None = None,
        operator_numbers: frozenset[str] = frozenset(),
        can_ask: Callable[[str | None], bool] = _never,
        usd_eur_rate: float | None = None,
        exchange: ExchangeRates | None = None,
    ) -> None:
        self.db = db
        # to convert a price a report carries (Telnyx says it in its webhooks): the day's
        # rate when there is an exchange service, else the fixed one
        self.usd_eur_rate = usd_eur_rate
        self.exchange = exchange
        self.operator_numbers = operator_numbers
        self.metrics = metrics
        self.price_delay = price_delay
        self.poll_delay = poll_delay
        # whether a provider can be asked about its messages (price, polled status)
        self.can_ask = can_ask

    async def apply_status(
        self, report: StatusReport, *, provider: str | None = None, tenant_id: str | None = None
    ) -> Applied | None:
        """Find the message (by our id, else by the provider's id) and apply the report."""
        provider = provider or report.provider
        usd_eur_rate = self.usd_eur_rate
        if self.exchange is not None and report.price:
            usd_eur_rate = await self.exchange.rate_for()

        def write(conn: Connection) -> Applied | None:
            message_id = report.message_id
            row = store.find_by_id(conn, message_id) if message_id else None
            # our message id in the callback URL (signed with the URL) names the message
            proof = row is not None and row["direction"] == "outbound"
            if row is None and provider and report.provider_message_id:
                row = store.find_by_provider_id(conn, provider, report.provider_message_id)
            if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
                return None
            if provider is not None and row["provider"] != provider:
                return None
            priced = row["channel"] == "sms" and self.can_ask(row["provider"])
            return apply_report(
                conn,
                row,
                report,
                self.price_delay,
                poll_delay=self.poll_delay,
                proof=proof,
                priced=priced,
                usd_eur_rate=usd_eur_rate,
            )

        applied = await self.db.write_fn(write)
        if applied is None:
            log.info("status report for an unknown message", extra={"source": report.source})
        elif applied.changed:
            if applied.status in ("delivered", "read"):
                self.metrics.delivered.labels(applied.channel).inc()
            elif applied.status in ("failed", "undelivered"):
                self.metrics.failed.labels(applied.channel, "provider").inc()
        return applied

    async def receive(self, message: InboundMessage, tenant_id: str | None = None) -> None:
        """An inbound message: a WhatsApp one belongs to the tenant of the webhook; an SMS
        is routed by `tenants_for_inbound`, and STOP/START manage the suppressions."""
        if tenant_id is not None:
            await self.record_inbound(tenant_id, message)
            return
        try:
            sender = normalize_e164(message.from_address)
            to = normalize_e164(message.to_address)
        except ValueError:
            log.info("inbound message with an unreadable number", extra={"channel": "sms"})
            return
        message = InboundMessage(
            message.channel,
            message.provider,
            message.provider_message_id,
            sender,
            to,
            message.body,
            message.payload,
        )
        tenants = await self.tenants_for_inbound(message.channel, to, sender)
        if not tenants:
            log.info("inbound message for no known tenant", extra={"channel": message.channel})
            return
        await self.record_inbound(tenants[0], message)
        word = message.body.strip().upper()
        if word in STOP_WORDS | START_WORDS:
            await self.opt_out(tenants, message.channel, sender, word)

    async def tenants_for_inbound(self, channel: str, to: str, sender: str) -> list[str]:
        """Who an inbound message on number `to` from `sender` belongs to, first one first.

        A number dedicated to one tenant belongs to that tenant alone. On any other number —
        the shared line, an operator sender — every tenant's customers write in, so it goes
        to the tenants that wrote to this sender *from this number*, most recent first: the
        first gets the message, and a STOP applies to all of them (the provider itself stops
        that number from writing to the sender). A number no tenant wrote from belongs to
        nobody: a tenant can never claim inbound traffic by registering a number."""
        owner = await tenant_store.tenant_for_number(self.db, to)
        if owner is not None and owner[1] == "dedicated" and to not in self.operator_numbers:
            return [owner[0]]
        return await store.recent_tenants_for_recipient(self.db, channel, sender, sender=to)

    async def record_inbound(self, tenant_id: str, message: InboundMessage) -> bool:
        """Log an inbound message once (providers retry webhooks); True when new."""
        now = now_iso()
        row = {
            "id": new_id("msg"),
            "tenant_id": tenant_id,
            "channel": message.channel,
            "direction": "inbound",
            "to_address": message.to_address,
            "from_address": message.from_address,
            "body": message.body,
            "status": "received",
            "provider": message.provider,
            "provider_message_id": message.provider_message_id,
            "provider_status": "received",
            "character_count": len(message.body),
            "message_type": "transactional",
            "currency": "EUR",
            "metadata": {},
            "created_at": now,
            "updated_at": now,
            "delivered_at": now,
        }

        def write(conn: Connection) -> bool:
            if store.find_by_provider_id(conn, message.provider, message.provider_message_id):
                return False
            store.insert_message(ScopedConnection(conn, tenant_id), row)
            store.insert_event(
                conn, str(row["id"]), tenant_id, message.provider, "received", True, message.payload
            )
            return True

        return await self.db.write_fn(write)

    async def opt_out(self, tenants: list[str], channel: str, address: str, word: str) -> None:
        def write(conn: Connection) -> None:
            for tenant_id in tenants:
                if word in STOP_WORDS:
                    store.add_suppression(
                        conn, tenant_id, channel, address, "stop_keyword", f"replied {word}"
                    )
                else:
                    store.remove_suppression(conn, tenant_id, channel, address)

        await self.db.write_fn(write)
