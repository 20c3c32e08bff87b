"""The USD→EUR rate of each day, from the ECB's euro reference rates.

Every conversion of a provider's USD cost asks `rate_for(day)`: the rate stored for that day
(`exchange_rates`), kept in memory once read. The day's rate is fetched once across instances
by `refresh` (run every minute by the gateway's own schedule; it claims the day in the table
before it reaches the feed, so a second instance does not). Until the day has a rate — before
its first refresh, or when the feed is unreachable or malformed — conversions use the last
stored rate of the previous `RECENT_DAYS` days, else the fixed `USD_EUR_RATE`; a failed fetch
logs a warning with the reason and is tried again after `RETRY_AFTER`."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx

from gateway.ids import iso, now_iso
from gateway.providers.ecb import feed
from gateway.store import exchange_rates as store
from gateway.store.engine import Connection, Engine

log = logging.getLogger("gateway.exchange")

CURRENCY = "USD"
# how old a stored rate may be and still stand in for a day without one
RECENT_DAYS = 7
# how long after a failed (or abandoned) fetch another one may be tried
RETRY_AFTER = timedelta(minutes=15)
FETCH_TIMEOUT = 10.0


def today() -> str:
    return datetime.now(UTC).date().isoformat()


class ExchangeRates:
    def __init__(
        self,
        db: Engine,
        url: str | None,
        fallback: Decimal,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.db = db
        self.url = url
        self.fallback = float(fallback)
        self._client = client
        self._days: dict[str, float] = {}

    async def rate_for(self, day: str | None = None) -> float:
        """EUR per USD for the conversions of `day` (UTC, YYYY-MM-DD; today by default)."""
        day = day or today()
        cached = self._days.get(day)
        if cached is not None:
            return cached
        since = (date.fromisoformat(day) - timedelta(days=RECENT_DAYS)).isoformat()

        def read(conn: Connection) -> tuple[float | None, float | None]:
            row = store.for_day(conn, day, CURRENCY)
            if row is not None and row["eur_per_unit"] is not None:
                return float(row["eur_per_unit"]), None
            recent = store.latest_since(conn, CURRENCY, since, day)
            return None, float(recent["eur_per_unit"]) if recent is not None else None

        stored, recent = await self.db.read_fn(read)
        if stored is not None:
            if len(self._days) > 64:
                self._days.clear()
            self._days[day] = stored
            return stored
        return recent if recent is not None else self.fallback

    async def refresh(self, day: str | None = None) -> bool:
        """Fetch and store the rate of `day` unless it is stored, being fetched by another
        instance, or failed less than `RETRY_AFTER` ago. True when this call fetched it."""
        if not self.url:
            return False
        day = day or today()
        if day in self._days:
            return False
        now = datetime.now(UTC)
        retry_before = iso(now - RETRY_AFTER)
        claimed = await self.db.write_fn(
            lambda conn: store.claim(conn, day, CURRENCY, iso(now), retry_before)
        )
        if not claimed:
            return False
        try:
            rates = await feed.fetch(self._http(), self.url)
            rate = round(float(rates.eur_per_unit(CURRENCY)), 6)
        except feed.FeedError as exc:
            reason = str(exc)
            await self.db.write_fn(
                lambda conn: store.record(conn, day, CURRENCY, None, reason, now_iso())
            )
            log.warning(
                "exchange rate feed unusable: converting at the last stored rate or USD_EUR_RATE",
                extra={"reason": reason, "day": day, "usd_eur_rate": self.fallback},
            )
            return True
        source = f"ecb:{rates.day}"
        await self.db.write_fn(
            lambda conn: store.record(conn, day, CURRENCY, rate, source, now_iso())
        )
        self._days[day] = rate
        log.info("exchange rate stored", extra={"day": day, "eur_per_usd": rate, "source": source})
        return True

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=True)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
