"""Deliver the sandbox's signed status callbacks with a fixed pool of workers.

Every callback of one message goes through the same worker, in the order the life cycle made
it, so the reorder and duplicate switches produce exactly the sequence they promise (a retry
can still be overtaken, as with Twilio). A receiver that is down or answers 5xx is retried a
few times with backoff and then given up on; nothing here raises into the emulator.

The pool is small on purpose: httpcore checks every pooled connection on each request, so a
few busy keep-alive connections deliver more callbacks per second than many idle ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx

from gateway.sandbox.twilio_webhooks import post_signed_form

logger = logging.getLogger(__name__)

_RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(slots=True)
class _Delivery:
    key: str
    url: str
    batch: list[dict[str, str]]
    generation: int
    attempt: int = 0


class CallbackSender:
    """Posts callbacks from the event loop that calls `send`; started lazily on first use."""

    def __init__(
        self,
        auth_token: str,
        *,
        concurrency: int = 8,
        retries: int = 3,
        backoff: float = 0.1,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.auth_token = auth_token
        self.transport = transport
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.delivered = 0
        self.dropped = 0
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: list[asyncio.Queue[_Delivery]] = []
        self._http: httpx.AsyncClient | None = None
        self._workers: list[asyncio.Task[None]] = []

    def send(self, key: str, url: str, batch: list[dict[str, str]]) -> None:
        """Queue `batch` for `url` behind earlier batches with the same `key`; on the loop."""
        self._enqueue(_Delivery(key, url, batch, self._generation))

    def discard_pending(self) -> None:
        # Bumping the generation makes workers skip whatever was queued before a reset.
        self._generation += 1
        self.delivered = 0
        self.dropped = 0

    async def aclose(self) -> None:
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._queues = []
        self._loop = None

    def _enqueue(self, delivery: _Delivery) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or not self._queues:
            self._loop = loop
            self._queues = [asyncio.Queue() for _ in range(self.concurrency)]
            limits = httpx.Limits(max_connections=self.concurrency)
            self._http = httpx.AsyncClient(
                timeout=self.timeout, limits=limits, transport=self.transport
            )
            self._workers = [loop.create_task(self._work(queue)) for queue in self._queues]
        self._queues[hash(delivery.key) % len(self._queues)].put_nowait(delivery)

    async def _work(self, queue: asyncio.Queue[_Delivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                await self._deliver(delivery)
            except Exception:  # a sandbox bug must not kill the worker pool
                logger.exception("status callback delivery crashed")

    async def _deliver(self, delivery: _Delivery) -> None:
        for index, params in enumerate(delivery.batch):
            if delivery.generation != self._generation:
                return
            outcome = await self._post(delivery.url, params)
            if outcome == "retry":
                self._retry_later(delivery, delivery.batch[index:])
                return
            if outcome == "drop":
                self.dropped += 1
            else:
                self.delivered += 1

    async def _post(self, url: str, params: dict[str, str]) -> str:
        assert self._http is not None
        try:
            response = await post_signed_form(self._http, url, params, self.auth_token)
        except httpx.HTTPError as exc:
            logger.debug("status callback to %s failed: %r", url, exc)
            return "retry"
        if response.is_success:
            return "ok"
        if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUSES:
            return "retry"
        return "drop"

    def _retry_later(self, delivery: _Delivery, rest: list[dict[str, str]]) -> None:
        if delivery.attempt >= self.retries or self._loop is None:
            self.dropped += len(rest)
            logger.info("dropped %d status callback(s) to %s", len(rest), delivery.url)
            return
        retry = _Delivery(
            delivery.key, delivery.url, rest, delivery.generation, delivery.attempt + 1
        )
        self._loop.call_later(self.backoff * 2**delivery.attempt, self._requeue, retry)

    def _requeue(self, delivery: _Delivery) -> None:
        # The pool may have been closed while the retry waited.
        if self._loop is not None:
            self._enqueue(delivery)
