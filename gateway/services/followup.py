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
import sqlite3
from collections.abc import Callable
from typing import Any

from gateway.channels.base import Adapter, Lookup, ProviderError, ProviderMessage
from gateway.config import Settings
from gateway.db import Database
from gateway.ids import later_iso, now_iso
from gateway.services import pricing
from gateway.services.dispatch_options import DispatchSettings
from gateway.services.message_status import PRICED, TWILIO_STATUS, StatusReport, apply_report
from gateway.store import messages as store

log = logging.getLogger("gateway.followups")

_MAX_POLL_INTERVAL = 6 * 3600.0


class Followups:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        adapters: Callable[[str, str], Adapter | None],
        options: DispatchSettings,
    ) -> None:
        self.db = db
        self.settings = settings
        self.adapters = adapters
        self.options = options

    @staticmethod
    def can_poll(row: sqlite3.Row) -> bool:
        return bool(row["channel"] == "sms" and row["provider"] in PRICED)

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                done = await self.fetch_prices() + await self.poll_statuses()
            except Exception:
                log.exception("follow-up loop error")
                done = 0
            if not done:
                await asyncio.sleep(max(self.options.poll_interval, 0.2))

    def _lookup(self, row: sqlite3.Row) -> Lookup | None:
        adapter = self.adapters(row["channel"], row["provider"])
        if not isinstance(adapter, Lookup) or not row["provider_message_id"]:
            return None
        return adapter

    # -- statuses ---------------------------------------------------------------------------

    async def poll_statuses(self) -> int:
        rows = await self.db.write_fn(lambda c: store.poll_due(c, now_iso(), 32))
        await asyncio.gather(*(self._poll(row) for row in rows))
        return len(rows)

    async def _poll(self, row: sqlite3.Row) -> None:
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
        status = TWILIO_STATUS.get(found.status)
        if status is None:
            await self._poll_again(row["id"], checks)
            return
        report = StatusReport(
            status=status,
            provider_status=found.status,
            source="poll",
            payload={"status": found.status, "error_code": found.error_code},
            error_code=found.error_code,
            provider_message_id=found.provider_message_id,
        )

        def write(conn: sqlite3.Connection) -> bool:
            fresh = store.find_by_id(conn, row["id"])
            if fresh is None:
                return True
            # the price comes with the same resource: fetch it at once when final
            apply_report(conn, fresh, report, 0.0)
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

    async def _price(self, row: sqlite3.Row) -> None:
        lookup = self._lookup(row)
        if lookup is None:
            return
        try:
            found: ProviderMessage | None = await lookup.fetch(row["provider_message_id"])
        except ProviderError:
            found = None
        rate = float(self.settings.decimal("USD_EUR_RATE"))
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
        segments_now = found.num_segments or row["num_segments"]
        billed = row["billed_cost"]
        if row["price_per_unit"] is not None and segments_now:
            billed = pricing.billed_cost(row["price_per_unit"], segments_now)
        fields = {
            "price_checks": checks,
            "provider_cost_usd": cost.reported if cost.exchange_rate is not None else None,
            "exchange_rate_usd_eur": cost.exchange_rate,
            "provider_cost": cost.cost_eur,
            "num_segments": segments_now,
            "billed_cost": billed,
            "margin": pricing.margin(billed, cost.cost_eur),
            "updated_at": now_iso(),
        }
        await self.db.write_fn(lambda c: store.update_message(c, row["id"], fields))
