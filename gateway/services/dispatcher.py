"""The dispatcher: sends what is due, with bounded concurrency, per-sender pacing, retries
with exponential backoff and jitter, and reconciliation instead of blind resends.

Life of an outbound message row:

    queued ──claim──▶ sending ──provider accepted──▶ sent ──callbacks / polls──▶ delivered / …
       ▲                 │ transient error before the request left: back to queued, later
       └─────────────────┤ permanent / configuration error, or attempts exhausted: failed
                         └ no answer (the request may have left): stays sending, flagged for
                           reconciliation — looked up at the provider, never resent blindly

Every status write here is a conditional transition (`store.move`, the rule in
gateway/message_states.py) limited to the sends the dispatcher owns (queued, sending): a
status a provider reported meanwhile is never overwritten. Rows are claimed inside one write
transaction, so a row is never handed out twice, whatever the number of instances.

A claim is a lease (DISPATCH_LEASE_SECONDS): the instance renews the leases of the sends it
works on every quarter of it. An instance that dies stops renewing; once its leases run out,
another instance (or itself, restarted) claims those rows flagged for reconciliation. An
instance never starts a request on a claim it has not renewed for longer than the lease less
the provider timeout (it may have been frozen, and its claim taken over): that request
could not finish before the lease ran out. On SQLite, where one process serves the file, the
sends still in flight at start-up are the previous process's and are taken at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from datetime import timedelta
from typing import Any

from gateway.config import Settings
from gateway.errors import ApiError
from gateway.ids import instance_id, later_iso, now_iso, parse_iso
from gateway.metrics import Metrics
from gateway.providers.base import OutboundMessage, ProviderError, ProviderMessage, SendResult
from gateway.providers.registry import Providers
from gateway.services import pricing
from gateway.services.batched_writes import BatchedWrites
from gateway.services.channel_config import ChannelConfigService, ChannelState
from gateway.services.dispatch_options import DispatchSettings
from gateway.services.exchange import ExchangeRates
from gateway.services.failover import SmsRouting
from gateway.services.followup import Followups
from gateway.services.pacing import pacer_for
from gateway.services.reconcile import Twin, decide
from gateway.store import channels as channel_store
from gateway.store import messages as store
from gateway.store.engine import Connection, Engine, Row, UniqueViolation
from gateway.store.tenant_scope import ScopedConnection, TenantDB

log = logging.getLogger("gateway.dispatcher")

_UNFINISHED = store.UNFINISHED
_DEPTH_EVERY = 1.0  # seconds between two reads of the queue depth (a metric)
__all__ = ["DispatchSettings", "Dispatcher"]


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))


def _unknown_outcome(why: str) -> ProviderError:
    return ProviderError(
        "unknown",
        f"the provider's answer was lost and {why}; not resent to avoid a duplicate",
        code="unknown_outcome",
    )


class _SendLeft(Exception):
    """Something failed after the request may have reached the provider."""


class Dispatcher:
    def __init__(
        self,
        db: Engine,
        settings: Settings,
        channels: ChannelConfigService,
        providers: Providers,
        metrics: Metrics,
        options: DispatchSettings | None = None,
        *,
        sms: SmsRouting | None = None,
        exchange: ExchangeRates | None = None,
    ) -> None:
        self.db = db
        # the day's USD→EUR rate (without one: stored rates, else USD_EUR_RATE)
        self.exchange = exchange or ExchangeRates(db, None, settings.typed.usd_eur_rate)
        # which SMS provider sends, and when to fail over to the next one
        self.sms = sms
        self.settings = settings
        self.channels = channels
        self.providers = providers
        self.metrics = metrics
        self.options = options or DispatchSettings.from_settings(settings)
        self.pacer = pacer_for(db, self.options.per_sender_rate)
        # the "sent" records of the sends that finish together go in one write
        self._sent_writes = BatchedWrites(db)
        self._depth_read_at = float("-inf")
        self.followups = Followups(db, settings, providers, self.options, self.exchange)
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._configs: dict[tuple[str, str], tuple[float, ChannelState]] = {}
        self._validated_configs: dict[int, tuple[ChannelState, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # the claims this instance works on: message id -> (claim id, lease last renewed)
        self._leases: dict[str, tuple[str, float]] = {}
        # the pacing slots booked with the claim: message id -> (sender, monotonic instant)
        self._booked: dict[str, tuple[str, float]] = {}
        self.instance = instance_id()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        alone = self.db.dialect == "sqlite"  # one serving process per SQLite file

        def recover(conn: Connection) -> int:
            return store.recover_in_flight(conn, now_iso(), only_process=alone)

        recovered = await self.db.write_fn(recover)
        if recovered:
            log.warning(
                "sends in flight at the last stop, to reconcile", extra={"count": recovered}
            )
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._renew_loop(), name="leases"),
            asyncio.create_task(self.followups.run(lambda: self._stopping), name="followups"),
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

    # -- claiming ---------------------------------------------------------------------------

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
        rows, claimed_at = await self.db.write_fn(lambda c: self._claim(c, limit))
        for row in rows:
            self._leases[row["id"]] = (row["claim_id"], claimed_at)
        await self._book_slots(rows)
        for row in rows:
            await self._slots.acquire()
            task = asyncio.create_task(self._process(row))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        if time.monotonic() - self._depth_read_at >= _DEPTH_EVERY:
            # a count over the queue: once a second, not on every claim
            self._depth_read_at = time.monotonic()
            self.metrics.queue_depth.set(await self.db.read_fn(store.queue_depth))
        return len(rows)

    async def _book_slots(self, rows: list[Row]) -> None:
        """The pacing slots of the claim's sends, taken together (gateway/services/pacing.py)."""
        sending = [r for r in rows if not r["needs_reconciliation"]]
        senders = [self._pacing_key(r) for r in sending]
        try:
            instants = await self.pacer.book(senders)
        except Exception:  # the claim is taken: its sends go on, each taking its own slot
            log.exception("booking the pacing slots failed")
            return
        for row, sender, instant in zip(sending, senders, instants, strict=True):
            self._booked[row["id"]] = (sender, instant)

    @staticmethod
    def _pacing_key(row: Row) -> str:
        return str(row["from_address"] or row["channel"])

    async def _pace(self, row: Row) -> None:
        """Wait for the send's slot: the one booked with its claim, else (a channel test, a
        send that changed sender on failover) one taken now."""
        sender = self._pacing_key(row)
        booked = self._booked.pop(row["id"], None)
        if booked is not None and booked[0] == sender:
            await self.pacer.wait_until(booked[1])
        else:
            await self.pacer.wait(sender)

    def _free_slots(self) -> int:
        return self.options.concurrency - len(self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    # -- leases -----------------------------------------------------------------------------

    def _claim(self, conn: Connection, limit: int) -> tuple[list[Row], float]:
        """Claim due rows, leased from the moment the write runs (not from when it was
        asked for: a write may wait its turn)."""
        claimed_at = time.monotonic()
        until = later_iso(self.options.lease)
        claim = store.new_claim_id(self.instance)
        return store.claim_due(conn, now_iso(), limit, until, claim), claimed_at

    async def _renew_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.options.lease / 4)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("renewing the leases failed")

    async def renew_leases(self) -> None:
        """Extend the leases of the claims in work; a claim not renewed was taken over by
        another instance (ours ran out): it is no longer this instance's to send."""
        claims = {message_id: claim for message_id, (claim, _) in self._leases.items()}
        if not claims:
            return

        def renew(conn: Connection) -> tuple[set[str], float]:
            renewed_at = time.monotonic()
            until = later_iso(self.options.lease)
            return store.renew_leases(conn, claims, until), renewed_at

        renewed, renewed_at = await self.db.write_fn(renew)
        for message_id, claim in claims.items():
            held = self._leases.get(message_id)
            if held is None or held[0] != claim:
                continue  # finished meanwhile
            if message_id in renewed:
                self._leases[message_id] = (claim, renewed_at)
            else:
                # the row is under another claim now (or settled by a callback)
                del self._leases[message_id]
                log.info("a claim ended elsewhere", extra={"message_id": message_id})

    def _still_ours(self, message_id: str) -> bool:
        """Whether a request for this claim may start now: its lease was renewed recently
        enough that the request ends (or times out) before the lease could run out."""
        lease = self._leases.get(message_id)
        if lease is None:
            return False
        margin = self.options.lease - self.options.provider_timeout
        return time.monotonic() - lease[1] < margin

    async def _process(self, row: Row) -> None:
        try:
            await self._attempt(row)
        finally:
            self._leases.pop(row["id"], None)
            self._booked.pop(row["id"], None)

    async def _attempt(self, row: Row) -> None:
        try:
            if row["needs_reconciliation"]:
                await self._reconcile(row)
            else:
                await self._send(row)
        except _SendLeft:
            log.exception("recording a send failed", extra={"message_id": row["id"]})
            # the provider may have the message: look it up, never send it again blindly
            with contextlib.suppress(Exception):
                await self._mark_unknown(row, ProviderError("unknown", "internal error"))
        except Exception:
            log.exception("send failed unexpectedly", extra={"message_id": row["id"]})
            with contextlib.suppress(Exception):
                if row["needs_reconciliation"]:
                    await self._mark_unknown(row, ProviderError("unknown", "internal error"))
                else:
                    await self._retry_or_fail(row, ProviderError("transient", "internal error"))

    async def _config(self, tenant_id: str, channel: str) -> ChannelState:
        key = (tenant_id, channel)
        cached = self._configs.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        state = await self.channels.load(TenantDB(self.db, tenant_id), channel)
        self._configs[key] = (time.monotonic() + 5.0, state)
        return state

    def _validated(self, state: ChannelState) -> Any:
        """`state.config()` (a pydantic validation), once per loaded state rather than once
        per send: the cached state is reloaded every few seconds anyway. The ApiError of
        settings refused today is returned, not raised."""
        key = id(state)
        cached = self._validated_configs.get(key)
        if cached is not None and cached[0] is state:
            return cached[1]
        try:
            validated: Any = state.config()
        except ApiError as exc:
            validated = exc
        if len(self._validated_configs) > 4 * len(self._configs) + 16:
            self._validated_configs.clear()  # states replaced since
        self._validated_configs[key] = (state, validated)
        return validated

    def _status_callback(self, row: Row) -> str | None:
        """Where the provider should report: our webhook, carrying our message id."""
        kind = self.providers.status_callback(row["provider"])
        if kind is None:
            return None
        base = self.settings.public_base_url
        return f"{base}/webhooks/{row['provider']}/{kind}?mid={row['id']}"

    # -- sending ----------------------------------------------------------------------------

    async def send_now(self, message_id: str) -> SendResult | ProviderError:
        """Send one held message at once, on the path every message takes, and say how it
        went (the channel test). Its channel may still be off; a transient failure fails it
        rather than retrying it later."""

        def claim(conn: Connection) -> tuple[list[Row], float]:
            claimed_at = time.monotonic()
            until = later_iso(self.options.lease)
            claim = store.new_claim_id(self.instance)
            return store.claim_held(conn, message_id, now_iso(), until, claim), claimed_at

        rows, claimed_at = await self.db.write_fn(claim)
        if not rows:
            return ProviderError("permanent", "the message is not waiting to be sent")
        self._leases[message_id] = (rows[0]["claim_id"], claimed_at)
        try:
            return await self._send(rows[0], retry=False, tested=True)
        finally:
            self._leases.pop(message_id, None)

    async def _send(
        self, row: Row, *, retry: bool = True, tested: bool = False
    ) -> SendResult | ProviderError:
        channel = row["channel"]
        state = await self._config(row["tenant_id"], channel)
        refused: ProviderError | None = None
        sender = self.providers.sender(row["provider"])
        if not state.row.enabled and not tested:
            refused = ProviderError(
                "permanent", f"the {channel} channel is disabled", code="channel_disabled"
            )
        elif sender is None:
            refused = ProviderError(
                "configuration", f"no {channel} provider is set up", code="no_provider"
            )
        else:
            validated = self._validated(state)
            if isinstance(validated, ApiError):  # settings an older version stored
                refused = ProviderError("configuration", validated.message, code=validated.code)
            else:
                config = validated
        if refused is None and self._fails_over(row):
            row = await self._route(row, state)
            sender = self.providers.sender(row["provider"])
        if refused is not None:
            await self._fail(row, refused)
            return refused
        assert sender is not None
        message = OutboundMessage(
            id=row["id"],
            tenant_id=row["tenant_id"],
            to=row["to_address"],
            body=row["body"],
            config=config,
            sender=row["from_address"],
            subject=row["subject"],
            html_body=row["html_body"],
            template=json.loads(row["template"]) if row["template"] else None,
            status_callback=self._status_callback(row),
        )
        await self._pace(row)
        if not self._still_ours(row["id"]):
            # frozen or cut off from the database for most of a lease: another instance may
            # hold this claim now; it reconciles the row (nothing was sent)
            log.warning("claim too old to send on", extra={"message_id": row["id"]})
            return ProviderError("unknown", "the claim ran out before the request left")
        started = time.perf_counter()
        try:
            result = await sender.send(message)
        except ProviderError as exc:
            self._observe(channel, row["provider"], exc.kind, started)
            delay = self._count(row, exc.kind, state)
            await self._handle_error(row, exc, retry=retry, delay=delay)
            return exc
        except Exception as exc:
            # a provider bug after the request may have left: the outcome is unknown
            self._observe(channel, row["provider"], "unknown", started)
            self._count(row, "unknown", state)
            log.exception("provider failed", extra={"message_id": row["id"]})
            error = ProviderError("unknown", f"provider error: {exc!r}")
            await self._mark_unknown(row, error)
            return error
        self._observe(channel, row["provider"], "ok", started)
        self._count(row, "ok", state)
        try:
            await self._record_sent(row, result, source="dispatcher")
        except Exception as exc:
            raise _SendLeft from exc
        return result

    # -- failover ---------------------------------------------------------------------------

    def _fails_over(self, row: Row) -> bool:
        return self.sms is not None and row["channel"] == "sms"

    async def _route(self, row: Row, state: ChannelState) -> Row:
        """The provider this attempt goes to: the first of the tenant's order whose circuit
        is closed. A switch is recorded on the message (provider and sender) before the
        request leaves, so that callbacks, look-ups and prices follow the provider that
        really has it. A message whose outcome is unknown is never here (it is reconciled
        with its provider)."""
        assert self.sms is not None
        operator = state.operator_settings
        chosen = self.sms.choose(operator)
        if chosen is None or chosen == row["provider"]:
            return row
        number = self.sms.sender(chosen, operator)
        payload = {
            "provider": chosen,
            "from_provider": row["provider"],
            "reason": f"failover: the circuit of {row['provider']} is open"
            if self.sms.failover.is_open(row["provider"])
            else f"{chosen} is first in the order again",
        }

        def write(conn: Connection) -> Row | None:
            switched = store.switch_provider(
                conn, row["id"], row["provider"], chosen, number, now_iso(), row["claim_id"]
            )
            if switched is not None:
                store.insert_event(
                    conn, row["id"], row["tenant_id"], "dispatcher", None, True, payload
                )
            return switched

        switched = await self.db.write_fn(write)
        if switched is None:
            self.sms.failover.released(chosen)
            return row
        self.metrics.failovers.labels(row["provider"], chosen).inc()
        log.info("SMS provider switched", extra={"message_id": row["id"], **payload})
        return switched

    def _count(self, row: Row, outcome: str, state: ChannelState) -> float | None:
        """Tell the circuits how the attempt went; returns the retry delay a failover asks
        for (None: the usual backoff)."""
        if not self._fails_over(row):
            return None
        assert self.sms is not None
        provider = row["provider"]
        delay = self.sms.record(provider, outcome, state.operator_settings)
        self.metrics.circuit_open.labels(provider).set(int(self.sms.failover.is_open(provider)))
        return delay

    def _observe(self, channel: str, provider: str, outcome: str, started: float) -> None:
        self.metrics.provider_latency.labels(channel, provider, outcome).observe(
            time.perf_counter() - started
        )

    async def _record_sent(
        self, row: Row, result: SendResult, *, source: str, reconciled: bool = False
    ) -> bool:
        """Record that the provider took the message under `result.provider_message_id`.

        The provider's own answer (or the record a reconciliation matched) is what gives the
        message its id; a status callback may already have moved it past `sent`, which the
        conditional move respects. Returns False when another message holds that id (only
        possible for a reconciliation's guess; the caller looks again)."""
        now = now_iso()
        sid = result.provider_message_id
        fields: dict[str, Any] = {
            "provider": result.provider,
            "error_code": None,
            "failure_reason": None,
            "needs_reconciliation": 0,
            "next_attempt_at": None,
            "provider_status": result.provider_status,
            "updated_at": now,
        }
        fill = {"provider_message_id": sid, "sent_at": now}
        if result.num_segments and row["channel"] == "sms" and row["price_per_unit"] is not None:
            fields["num_segments"] = result.num_segments
            fields["billed_cost"] = pricing.billed_cost(row["price_per_unit"], result.num_segments)
        rate = await self.exchange.rate_for() if result.price else 0.0
        cost = pricing.provider_cost(result.price, result.price_unit, rate)
        if cost is not None and row["provider_cost"] is None:  # the provider said it (Telnyx)
            fields.update(
                pricing.cost_fields(
                    cost,
                    price_per_unit=row["price_per_unit"],
                    segments=result.num_segments or row["num_segments"],
                    billed=fields.get("billed_cost", row["billed_cost"]),
                )
            )
        if self.followups.can_poll(row) and self.options.status_poll > 0:
            fields["poll_due_at"] = later_iso(self.options.status_poll)
        payload: dict[str, Any] = {"provider_message_id": sid, "attempt": row["attempts"]}
        if reconciled:
            payload["reconciled"] = "found at the provider"

        def record(conn: Connection) -> bool:
            moved = store.move(conn, row["id"], "sent", fields, only_from=_UNFINISHED, fill=fill)
            if not moved:  # a callback got there first: keep what it said
                store.settle_sent(conn, row["id"], sid)
            store.insert_event(conn, row["id"], row["tenant_id"], source, "sent", moved, payload)
            return True

        def write(conn: Connection) -> bool:
            try:
                return record(conn)
            except UniqueViolation:  # another message holds that provider id
                # the transaction goes on after the failed statement: SQLite allows it; on
                # PostgreSQL the engine replays this function with a savepoint per statement
                holder = store.holder_of(conn, result.provider, sid)
                if holder is None or holder == row["id"]:
                    raise
                if reconciled:
                    return False  # a twin took it meanwhile
                # the provider just answered us with this id: a reconciliation that gave it
                # to a twin guessed wrong; the twin is looked up again
                store.exchange_provider_id(conn, sid, holder=holder, owner=row["id"], now=now)
                return record(conn)

        adopted = await self._sent_writes.write(write)
        if adopted:
            self.metrics.sent.labels(row["channel"]).inc()
        return adopted

    async def _handle_error(
        self,
        row: Row,
        exc: ProviderError,
        *,
        retry: bool = True,
        delay: float | None = None,
    ) -> None:
        if exc.kind == "transient" and retry:
            await self._retry_or_fail(row, exc, delay)
        elif exc.kind == "unknown":
            await self._mark_unknown(row, exc)
        else:
            await self._fail(row, exc)

    async def _retry_or_fail(
        self, row: Row, exc: ProviderError, delay: float | None = None
    ) -> None:
        """Retry later (after `delay`, else the provider's Retry-After or the backoff)."""
        # `attempts` was counted when the row was claimed for this attempt
        attempts = row["attempts"]
        if attempts >= self.options.max_attempts:
            await self._fail(row, exc, f"gave up after {attempts} attempts: {exc.reason}")
            return
        if delay is None:
            delay = max(
                exc.retry_after or 0.0,
                backoff(attempts, self.options.backoff_base, self.options.backoff_max),
            )
        moved = await self._transition(
            row,
            "queued",
            {
                "next_attempt_at": later_iso(delay),
                "error_code": exc.code,
                "failure_reason": exc.reason,
                "needs_reconciliation": 0,
            },
            {"retry_in_seconds": round(delay, 3), "error": exc.reason, "code": exc.code},
        )
        if moved:
            self.metrics.retries.labels(row["channel"]).inc()

    async def _mark_unknown(self, row: Row, exc: ProviderError, delay: float | None = None) -> None:
        await self._transition(
            row,
            "sending",
            {
                "needs_reconciliation": 1,
                "next_attempt_at": later_iso(
                    self.options.reconcile_delay if delay is None else delay
                ),
                "failure_reason": f"outcome unknown: {exc.reason}",
            },
            {"reconcile": True, "error": exc.reason},
        )

    async def _transition(
        self, row: Row, status: str, fields: dict[str, Any], payload: dict[str, Any]
    ) -> bool:
        """Move a send the dispatcher owns and record the event, in one transaction; a
        status a provider reported meanwhile wins (the event says it was not applied)."""
        fields = {**fields, "updated_at": now_iso()}

        def write(conn: Connection) -> bool:
            moved = store.move(
                conn, row["id"], status, fields, only_from=_UNFINISHED, claim=row["claim_id"]
            )
            store.insert_event(
                conn, row["id"], row["tenant_id"], "dispatcher", status, moved, payload
            )
            return moved

        return await self.db.write_fn(write)

    async def _fail(self, row: Row, exc: ProviderError, reason: str | None = None) -> None:
        now = now_iso()
        fields = {
            "failed_at": now,
            "error_code": exc.code or exc.kind,
            "failure_reason": reason or exc.reason,
            "needs_reconciliation": 0,
            "next_attempt_at": None,
            "updated_at": now,
        }
        channel = row["channel"]

        def write(conn: Connection) -> bool:
            moved = store.move(
                conn, row["id"], "failed", fields, only_from=_UNFINISHED, claim=row["claim_id"]
            )
            store.insert_event(
                conn,
                row["id"],
                row["tenant_id"],
                "dispatcher",
                "failed",
                moved,
                {"kind": exc.kind, "code": exc.code, "error": exc.reason},
            )
            if exc.suppress:
                store.add_suppression(
                    conn, row["tenant_id"], channel, row["to_address"], exc.suppress, exc.reason
                )
            if exc.kind == "configuration":
                channel_store.set_last_error(
                    ScopedConnection(conn, row["tenant_id"]), channel, exc.reason
                )
            return moved

        if await self.db.write_fn(write):
            self.metrics.failed.labels(channel, exc.kind).inc()

    # -- reconciliation ---------------------------------------------------------------------

    async def _reconcile(self, row: Row) -> None:
        """A send whose answer was lost: find it at the provider, or prove it is not there.

        A status callback carrying our message id, if one came meanwhile, already gave the
        row its provider id and status (the preferred proof); what is left is matched
        one-to-one against the provider's records (gateway/services/reconcile.py)."""
        if row["provider_message_id"]:
            await self._settle(row)
            return
        lookup = self.providers.lookup(row["provider"])
        if lookup is None:
            await self._fail(row, _unknown_outcome("the provider offers no way to look it up"))
            return
        skew = timedelta(seconds=self.options.reconcile_skew)
        now = parse_iso(now_iso())
        deadline = timedelta(seconds=self.options.provider_timeout)

        def twins(conn: Connection) -> list[Row]:
            return store.unsettled_twins(
                conn, row["provider"], row["to_address"], row["from_address"], row["body"]
            )

        rows = await self.db.read_fn(twins)
        group = [
            Twin(
                r["id"],
                parse_iso(r["attempted_at"] or r["created_at"]),
                in_flight=r["status"] == "sending"
                and not r["needs_reconciliation"]
                and parse_iso(r["attempted_at"] or r["created_at"]) > now - deadline - skew,
            )
            for r in rows
            if r["status"] == "sending"
        ]
        if not any(t.id == row["id"] for t in group):
            return  # settled meanwhile (a callback came)
        since = min(t.attempted for t in group) - skew
        try:
            listed = await lookup.find_sent(row["to_address"], row["from_address"], since)
        except ProviderError as exc:
            # a look-up is a read: one whose answer was lost (unknown) changed nothing at the
            # provider and is simply asked again, as a transient failure is
            if exc.kind in ("transient", "unknown"):
                await self._mark_unknown(row, exc)  # look again later
            else:
                await self._fail(row, _unknown_outcome(f"looking it up failed: {exc.reason}"))
            return
        same = [c for c in listed if c.body == row["body"]]
        held = await self.db.read_fn(
            lambda c: store.adopted_provider_ids(
                c, row["provider"], [m.provider_message_id for m in same], row["id"]
            )
        )
        free = [c for c in same if c.provider_message_id not in held]
        decision = decide(row["id"], group, free, deadline=deadline, skew=skew)
        if decision.action == "later":
            await self._mark_unknown(
                row, ProviderError("unknown", "a twin's send is in flight"), delay=deadline.seconds
            )
        elif decision.action == "adopt":
            assert decision.match is not None
            await self._adopt(row, decision.match)
        elif decision.action == "ambiguous":
            await self._fail(
                row,
                _unknown_outcome(
                    "the provider holds fewer identical messages (same recipient, sender and "
                    "text) than were sent at that time, so which ones were sent cannot be told"
                ),
            )
        else:
            # absent from the provider's records: proof only once the attempt's window has
            # closed, for a request the provider got may be processed late (our timeout
            # fired, or its queue was slow): until then, look again at the window's end
            mine = next(t for t in group if t.id == row["id"])
            closes = mine.attempted + deadline + skew
            if now < closes:
                await self._mark_unknown(
                    row,
                    ProviderError("unknown", "not at the provider yet; looking again"),
                    delay=(closes - now).total_seconds(),
                )
            else:
                await self._requeue_absent(row)

    async def _adopt(self, row: Row, found: ProviderMessage) -> None:
        result = SendResult(
            provider=row["provider"],
            provider_message_id=found.provider_message_id,
            provider_status=found.status,
            num_segments=found.num_segments,
        )
        if not await self._record_sent(row, result, source="dispatcher", reconciled=True):
            # a twin adopted that record meanwhile: decide again with what is left
            await self._mark_unknown(
                row, ProviderError("unknown", "a twin took the match"), delay=0.0
            )

    async def _settle(self, row: Row) -> None:
        """A callback identified the send while it was flagged: nothing is left to do but
        make sure it no longer waits."""
        now = now_iso()

        def write(conn: Connection) -> None:
            store.move(conn, row["id"], "sent", {"updated_at": now}, only_from=_UNFINISHED)
            store.update_message(
                conn, row["id"], {"needs_reconciliation": 0, "next_attempt_at": None}
            )

        await self.db.write_fn(write)

    async def _requeue_absent(self, row: Row) -> None:
        """Proven absent at the provider: sending it now is not a duplicate — unless a
        status callback identified the send meanwhile, which the conditional move respects."""
        now = now_iso()

        def write(conn: Connection) -> None:
            moved = store.move(
                conn,
                row["id"],
                "queued",
                {"needs_reconciliation": 0, "next_attempt_at": now, "updated_at": now},
                only_from=frozenset({"sending"}),
                claim=row["claim_id"],  # the look-up was made under this claim
            )
            if moved:
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
