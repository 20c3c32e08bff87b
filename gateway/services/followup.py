"""What happens after a provider took a message: its price, fetched once the status is final
(Twilio's `price` is null at first), and its status, polled when the final status callback
never came — Twilio does not retry a status callback that failed, so a message whose
callback was lost while the gateway was down would otherwise stay `sent` forever.

`STATUS_POLL_SECONDS` (default 900) is how long a message may wait for its callback before
the provider is asked; a message still not final is asked again later, at doubling
intervals, `poll_checks` times in all. What a poll learns is applied exactly as the callback
would have been (source `poll` in the message's events).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gateway.config import Settings
from gateway.ids import later_iso, now_iso
from gateway.providers.base import Lookup, ProviderError, ProviderMessage
from gateway.providers.registry import Providers
from gateway.services import pricing
from gateway.services.dispatch_options import DispatchSettings
from gateway.services.exchange import ExchangeRates
from gateway.services.message_status import apply_report
from gateway.store import messages as store
from gateway.store.engine import Connection, Engine, Row

log = logging.getLogger("gateway.followups")

_MAX_POLL_INTERVAL = 6 * 3600.0


class Followups:
    def __init__(
        self,
        db: Engine,
        settings: Settings,
        providers: Providers,
        options: DispatchSettings,
        exchange: ExchangeRates | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.providers = providers
        self.options = options
        self.exchange = exchange or ExchangeRates(db, None, settings.typed.usd_eur_rate)

    def can_poll(self, row: Row) -> bool:
        return self.providers.declares(row["provider"], "lookup")

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                done = await self.fetch_prices() + await self.poll_statuses()
            except Exception:
                log.exception("follow-up loop error")
                done = 0
            if not done:
                await asyncio.sleep(max(self.options.poll_interval, 0.2))

    def _lookup(self, row: Row) -> Lookup | None:
        if not row["provider_message_id"]:
            return None
        return self.providers.lookup(row["provider"])

    # -- statuses ---------------------------------------------------------------------------

    async def poll_statuses(self) -> int:
        rows = await self.db.write_fn(lambda c: store.poll_due(c, now_iso(), 32))
        await asyncio.gather(*(self._poll(row) for row in rows))
        return len(rows)

    async def _poll(self, row: Row) -> None:
        lookup = self._lookup(row)
        if lookup is None:
            return
        checks = row["poll_checks"] + 1
        try:
            found = await lookup.fetch(row["provider_message_id"])
        except ProviderError as exc:
            log.info("status poll failed", extra={"message_id": row["id"], "reason": exc.reason})
            await self._poll_again(row["id"], checks)
            return
        report = lookup.report(found, "poll")
        if report is None:
            await self._poll_again(row["id"], checks)
            return

        def write(conn: Connection) -> bool:
            fresh = store.find_by_id(conn, row["id"])
            if fresh is None:
                return True
            # the price comes with the same resource: fetch it at once when final
            apply_report(conn, fresh, report, 0.0, priced=True)
            return store.current_status(conn, row["id"]) in store.FINAL

        final = await self.db.write_fn(write)
        if not final:
            await self._poll_again(row["id"], checks)

    async def _poll_again(self, message_id: str, checks: int) -> None:
        fields: dict[str, Any] = {"poll_checks": checks}
        if checks < self.options.poll_checks:
            interval = min(self.options.status_poll * 2**checks, _MAX_POLL_INTERVAL)
            fields["poll_due_at"] = later_iso(interval)
        await self.db.write_fn(lambda c: store.update_message(c, message_id, fields))

    # -- prices -----------------------------------------------------------------------------

    async def fetch_prices(self) -> int:
        rows = await self.db.write_fn(lambda c: store.price_due(c, now_iso(), 32))
        await asyncio.gather(*(self._price(row) for row in rows))
        return len(rows)

    async def _price(self, row: Row) -> None:
        lookup = self._lookup(row)
        if lookup is None:
            return
        try:
            found: ProviderMessage | None = await lookup.fetch(row["provider_message_id"])
        except ProviderError:
            found = None
        rate = await self.exchange.rate_for() if found and found.price else 0.0
        cost = pricing.provider_cost(
            found.price if found else None, found.price_unit if found else None, rate
        )
        checks = row["price_checks"] + 1
        if cost is None:
            fields: dict[str, Any] = {"price_checks": checks}
            if checks < self.options.price_checks:
                fields["price_due_at"] = later_iso(self.options.price_delay * checks)
            await self.db.write_fn(lambda c: store.update_message(c, row["id"], fields))
            return
        assert found is not None
        fields = {
            "price_checks": checks,
            **pricing.cost_fields(
                cost,
                price_per_unit=row["price_per_unit"],
                segments=found.num_segments or row["num_segments"],
                billed=row["billed_cost"],
            ),
            "updated_at": now_iso(),
        }
        await self.db.write_fn(lambda c: store.update_message(c, row["id"], fields))
