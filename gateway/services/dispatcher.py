"""The dispatcher: sends what is due, with bounded concurrency, per-sender pacing, retries
with exponential backoff and jitter, and reconciliation instead of blind resends.

Life of an outbound message row:

    queued ──claim──▶ sending ──provider accepted──▶ sent ──callbacks──▶ delivered / …
       ▲                 │ transient error (attempts left): back to queued, later
       └─────────────────┤ permanent / configuration error, or attempts exhausted: failed
                         └ no answer (the request left): stays sending, flagged for
                           reconciliation — looked up at the provider, never resent blindly

Rows are claimed inside one write transaction, so a row is never handed out twice; at start,
rows still marked `sending` from a previous process are flagged for reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from gateway.channels.base import Adapter, OutboundMessage, ProviderError, SendResult
from gateway.config import Settings
from gateway.db import Database, TenantDB
from gateway.ids import iso, now_iso, parse_iso
from gateway.metrics import Metrics
from gateway.services import pricing
from gateway.services.channel_config import ChannelConfigService, ChannelState
from gateway.store import messages as store

log = logging.getLogger("gateway.dispatcher")


class Reconciler(Protocol):
    async def find_sent(self, to: str, body: str, sent_after: Any) -> list[dict[str, Any]]: ...


@dataclass
class DispatchSettings:
    concurrency: int = 32
    batch: int = 64
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    per_sender_rate: float = 50.0  # messages per second per sender
    reconcile_delay: float = 30.0
    price_delay: float = 5.0
    price_checks: int = 5
    poll_interval: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchSettings:
        def number(name: str, default: float) -> float:
            raw = settings.get(name)
            return float(raw) if raw is not None else default

        return cls(
            concurrency=int(number("DISPATCH_CONCURRENCY", 32)),
            max_attempts=int(number("DISPATCH_MAX_ATTEMPTS", 5)),
            backoff_base=number("DISPATCH_BACKOFF_SECONDS", 1.0),
            backoff_max=number("DISPATCH_BACKOFF_MAX_SECONDS", 300.0),
            per_sender_rate=number("DISPATCH_PER_SENDER_RATE", 50.0),
            reconcile_delay=number("DISPATCH_RECONCILE_SECONDS", 30.0),
            price_delay=number("PRICE_FETCH_DELAY_SECONDS", 5.0),
            poll_interval=number("DISPATCH_POLL_SECONDS", 0.5),
        )


class Pacer:
    """At most `rate` sends per second per sender, spread evenly (a leaky bucket)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next: dict[str, float] = {}

    async def wait(self, sender: str) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self._next.get(sender, now))
        self._next[sender] = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))


def _later(seconds: float) -> str:
    return iso(parse_iso(now_iso()) + timedelta(seconds=seconds))


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        channels: ChannelConfigService,
        adapters: Callable[[str, str], Adapter | None],
        metrics: Metrics,
        options: DispatchSettings | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.channels = channels
        self.adapters = adapters
        self.metrics = metrics
        self.options = options or DispatchSettings.from_settings(settings)
        self.pacer = Pacer(self.options.per_sender_rate)
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._configs: dict[tuple[str, str], tuple[float, ChannelState]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        recovered = await self.db.write_fn(lambda c: store.recover_in_flight(c, now_iso()))
        if recovered:
            log.warning(
                "sends in flight at the last stop, to reconcile", extra={"count": recovered}
            )
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._price_loop(), name="prices"),
        ]

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop claiming, let in-flight sends finish (up to the timeout), then stop."""
        self._stopping = True
        self._wake.set()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=drain_timeout)

    def wake(self) -> None:
        """Callable from any thread (the cron tick of `gateway cron` or a test may run on
        another event loop than the dispatcher's)."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # -- sending ----------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("dispatch loop error")
                claimed = 0
            if not claimed:
                await self._sleep(self.options.poll_interval)

    async def run_once(self) -> int:
        """Claim what is due (as many as free slots allow) and start sending it."""
        free = self._free_slots()
        if free == 0:
            await self._slots.acquire()
            self._slots.release()
            free = self._free_slots()
        limit = min(free, self.options.batch)
        rows = await self.db.write_fn(lambda c: store.claim_due(c, now_iso(), limit))
        for row in rows:
            await self._slots.acquire()
            task = asyncio.create_task(self._process(row))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        depth = await self.db.read_fn(store.queue_depth)
        self.metrics.queue_depth.set(depth)
        return len(rows)

    def _free_slots(self) -> int:
        return self.options.concurrency - len(self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def drain(self, wait_seconds: float = 10.0) -> None:
        """Wait for the sends started so far (tests and `gateway cron`)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_seconds)

    async def _process(self, row: sqlite3.Row) -> None:
        try:
            if row["needs_reconciliation"]:
                await self._reconcile(row)
            else:
                await self._send(row)
        except Exception:
            log.exception("send failed unexpectedly", extra={"message_id": row["id"]})
            await self._retry_or_fail(row, ProviderError("transient", "internal error"))

    async def _config(self, tenant_id: str, channel: str) -> ChannelState:
        key = (tenant_id, channel)
        cached = self._configs.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        state = await self.channels.load(TenantDB(self.db, tenant_id), channel)
        self._configs[key] = (time.monotonic() + 5.0, state)
        return state

    def _status_callback(self, row: sqlite3.Row) -> str | None:
        if row["channel"] != "sms":
            return None
        return f"{self.settings.public_base_url}/webhooks/twilio/status?mid={row['id']}"

    async def _send(self, row: sqlite3.Row) -> None:
        channel = row["channel"]
        state = await self._config(row["tenant_id"], channel)
        if not state.row.enabled:
            await self._fail(
                row,
                ProviderError(
                    "permanent", f"the {channel} channel is disabled", code="channel_disabled"
                ),
            )
            return
        adapter = self.adapters(channel, row["provider"])
        if adapter is None:
            await self._fail(
                row,
                ProviderError(
                    "configuration", f"no {channel} provider is set up", code="no_provider"
                ),
            )
            return
        import json

        message = OutboundMessage(
            id=row["id"],
            tenant_id=row["tenant_id"],
            to=row["to_address"],
            body=row["body"],
            config=state.config(),
            sender=row["from_address"],
            subject=row["subject"],
            html_body=row["html_body"],
            template=json.loads(row["template"]) if row["template"] else None,
            status_callback=self._status_callback(row),
        )
        await self.pacer.wait(row["from_address"] or channel)
        started = time.perf_counter()
        try:
            result = await adapter.send(message)
        except ProviderError as exc:
            self._observe(channel, adapter.provider, exc.kind, started)
            await self._handle_error(row, exc)
            return
        self._observe(channel, adapter.provider, "ok", started)
        await self._record_sent(row, result)

    def _observe(self, channel: str, provider: str, outcome: str, started: float) -> None:
        self.metrics.provider_latency.labels(channel, provider, outcome).observe(
            time.perf_counter() - started
        )

    async def _record_sent(self, row: sqlite3.Row, result: SendResult) -> None:
        now = now_iso()
        fields: dict[str, Any] = {
            "provider": result.provider,
            "provider_message_id": result.provider_message_id,
            "error_code": None,
            "failure_reason": None,
            "needs_reconciliation": 0,
            "updated_at": now,
        }
        if result.num_segments and row["channel"] == "sms" and row["price_per_unit"] is not None:
            fields["num_segments"] = result.num_segments
            fields["billed_cost"] = pricing.billed_cost(row["price_per_unit"], result.num_segments)

        def write(conn: sqlite3.Connection) -> None:
            store.update_message(conn, row["id"], fields)
            # a status callback may have overtaken us: only move forward
            conn.execute(
                "UPDATE channel_messages_log SET status = 'sent', provider_status = ?, "
                "sent_at = COALESCE(sent_at, ?) WHERE id = ? AND status IN ('queued', 'sending')",
                (result.provider_status, now, row["id"]),
            )
            store.insert_event(
                conn,
                row["id"],
                row["tenant_id"],
                "dispatcher",
                "sent",
                True,
                {"provider_message_id": result.provider_message_id, "attempt": row["attempts"] + 1},
            )

        await self.db.write_fn(write)
        self.metrics.sent.labels(row["channel"]).inc()

    async def _handle_error(self, row: sqlite3.Row, exc: ProviderError) -> None:
        if exc.kind == "transient":
            await self._retry_or_fail(row, exc)
        elif exc.kind == "unknown":
            await self._mark_unknown(row, exc)
        else:
            await self._fail(row, exc)

    async def _retry_or_fail(self, row: sqlite3.Row, exc: ProviderError) -> None:
        attempts = row["attempts"] + (0 if row["needs_reconciliation"] else 1)
        if attempts >= self.options.max_attempts:
            await self._fail(row, exc, f"gave up after {attempts} attempts: {exc.reason}")
            return
        delay = max(
            exc.retry_after or 0.0,
            backoff(attempts, self.options.backoff_base, self.options.backoff_max),
        )
        await self._transition(
            row,
            {
                "status": "queued",
                "next_attempt_at": _later(delay),
                "error_code": exc.code,
                "failure_reason": exc.reason,
                "needs_reconciliation": 0,
            },
            "queued",
            True,
            {"retry_in_seconds": round(delay, 3), "error": exc.reason, "code": exc.code},
        )
        self.metrics.retries.labels(row["channel"]).inc()

    async def _mark_unknown(self, row: sqlite3.Row, exc: ProviderError) -> None:
        await self._transition(
            row,
            {
                "status": "sending",
                "needs_reconciliation": 1,
                "next_attempt_at": _later(self.options.reconcile_delay),
                "failure_reason": f"outcome unknown: {exc.reason}",
            },
            "sending",
            False,
            {"reconcile": True, "error": exc.reason},
        )

    async def _transition(
        self,
        row: sqlite3.Row,
        fields: dict[str, Any],
        status: str,
        applied: bool,
        payload: dict[str, Any],
    ) -> None:
        """Update a message and record the event, in one transaction."""
        fields = {**fields, "updated_at": now_iso()}

        def write(conn: sqlite3.Connection) -> None:
            store.update_message(conn, row["id"], fields)
            store.insert_event(
                conn, row["id"], row["tenant_id"], "dispatcher", status, applied, payload
            )

        await self.db.write_fn(write)

    async def _fail(self, row: sqlite3.Row, exc: ProviderError, reason: str | None = None) -> None:
        now = now_iso()
        fields = {
            "status": "failed",
            "failed_at": now,
            "error_code": exc.code or exc.kind,
            "failure_reason": reason or exc.reason,
            "needs_reconciliation": 0,
            "next_attempt_at": None,
            "updated_at": now,
        }
        channel = row["channel"]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("SAVEPOINT fail")
            store.update_message(conn, row["id"], fields)
            store.insert_event(
                conn,
                row["id"],
                row["tenant_id"],
                "dispatcher",
                "failed",
                True,
                {"kind": exc.kind, "code": exc.code, "error": exc.reason},
            )
            if exc.suppress:
                store.add_suppression(
                    conn, row["tenant_id"], channel, row["to_address"], exc.suppress, exc.reason
                )
            if exc.kind == "configuration":
                conn.execute(
                    "UPDATE channel_configurations SET last_error = ?, last_error_at = ? "
                    "WHERE tenant_id = ? AND channel_type = ?",
                    (exc.reason, now, row["tenant_id"], channel),
                )
            conn.execute("RELEASE fail")

        await self.db.write_fn(write)
        self.metrics.failed.labels(channel, exc.kind).inc()

    # -- reconciliation -----------------------------------------------------------------------

    async def _reconcile(self, row: sqlite3.Row) -> None:
        adapter = self.adapters(row["channel"], row["provider"])
        finder = getattr(adapter, "find_sent", None)
        if finder is None:
            await self._fail(
                row,
                ProviderError(
                    "unknown",
                    "the provider's answer was lost and it offers no way to look the "
                    "message up; not resent to avoid a duplicate",
                    code="unknown_outcome",
                ),
            )
            return
        try:
            candidates = await finder(
                row["to_address"], row["body"], parse_iso(row["created_at"]).date()
            )
        except ProviderError as exc:
            if exc.kind == "transient":
                await self._mark_unknown(row, exc)  # look again later
            else:
                await self._fail(
                    row,
                    ProviderError(
                        "unknown",
                        f"the provider's answer was lost and looking it up failed: "
                        f"{exc.reason}; not resent to avoid a duplicate",
                        code="unknown_outcome",
                    ),
                )
            return
        ids = [c["sid"] for c in candidates]
        taken = await self.db.read_fn(
            lambda c: store.adopted_provider_ids(c, row["provider"], ids, row["id"])
        )
        match = next((c for c in candidates if c["sid"] not in taken), None)
        if match is not None:
            await self._record_sent(
                row,
                SendResult(
                    provider=row["provider"],
                    provider_message_id=match["sid"],
                    provider_status=match["status"] or "sent",
                    num_segments=match["num_segments"],
                ),
            )
            return
        # the provider never got it: sending it now is not a duplicate — unless a status
        # callback identified the send meanwhile, which the conditional update respects
        now = now_iso()

        def write(conn: sqlite3.Connection) -> None:
            requeued = conn.execute(
                "UPDATE channel_messages_log SET status = 'queued', needs_reconciliation = 0, "
                "next_attempt_at = ?, updated_at = ? WHERE id = ? AND status = 'sending' "
                "AND needs_reconciliation = 1 AND provider_message_id IS NULL",
                (now, now, row["id"]),
            ).rowcount
            if requeued:
                store.insert_event(
                    conn,
                    row["id"],
                    row["tenant_id"],
                    "dispatcher",
                    "queued",
                    True,
                    {"reconciled": "not found at the provider; sending"},
                )

        await self.db.write_fn(write)
        self.wake()

    # -- provider prices ----------------------------------------------------------------------

    async def _price_loop(self) -> None:
        while not self._stopping:
            try:
                done = await self.fetch_prices()
            except Exception:
                log.exception("price loop error")
                done = 0
            if not done:
                await asyncio.sleep(max(self.options.poll_interval, 0.2))

    async def fetch_prices(self) -> int:
        rows = await self.db.write_fn(lambda c: store.price_due(c, now_iso(), 32))
        await asyncio.gather(*(self._price(row) for row in rows))
        return len(rows)

    async def _price(self, row: sqlite3.Row) -> None:
        adapter = self.adapters(row["channel"], row["provider"])
        fetch = getattr(adapter, "fetch", None)
        if fetch is None or not row["provider_message_id"]:
            return
        try:
            found = await fetch(row["provider_message_id"])
        except ProviderError:
            found = {"price": None}
        rate = float(self.settings.decimal("USD_EUR_RATE"))
        cost = pricing.provider_cost(found.get("price"), found.get("price_unit"), rate)
        checks = row["price_checks"] + 1
        if cost is None:
            if checks < self.options.price_checks:
                fields: dict[str, Any] = {
                    "price_checks": checks,
                    "price_due_at": _later(self.options.price_delay * checks),
                }
                await self.db.write_fn(lambda c: store.update_message(c, row["id"], fields))
            else:
                await self.db.write_fn(
                    lambda c: store.update_message(c, row["id"], {"price_checks": checks})
                )
            return
        segments_now = found.get("num_segments") or row["num_segments"]
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
