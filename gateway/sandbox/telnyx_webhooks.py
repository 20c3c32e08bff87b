"""Play Telnyx's side of a webhook: events in Telnyx's envelope, signed as Telnyx signs them,
and delivered as Telnyx delivers them.

The signature is Ed25519 over `f"{timestamp}|{body}"`, base64 in `telnyx-signature-ed25519`,
the Unix timestamp in `telnyx-timestamp`. Telnyx tries each URL up to three times and then
the failover URL; every attempt is a new request, its `meta.attempt` counting up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.sandbox.telnyx_wire import encoding_of, iso, new_id, segment_count

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
logger = logging.getLogger(__name__)


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    """The public key as Mission Control shows it: the 32 raw bytes, base64."""
    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def sign(private_key: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    return base64.b64encode(private_key.sign(timestamp.encode() + b"|" + body)).decode()


def event(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The `data` of a webhook: a new event about `payload` (a message resource)."""
    return {
        "event_type": event_type,
        "id": new_id(),
        "occurred_at": iso(datetime.now(UTC)),
        "payload": payload,
        "record_type": "event",
    }


def inbound_event(
    from_: str, to: str, text: str, *, messaging_profile_id: str | None = None
) -> dict[str, Any]:
    """The `message.received` event Telnyx posts when `from_` texts our number `to`."""
    now = iso(datetime.now(UTC))
    return event(
        "message.received",
        {
            "id": new_id(),
            "record_type": "message",
            "direction": "inbound",
            "type": "SMS",
            "messaging_profile_id": messaging_profile_id,
            "from": {"phone_number": from_, "carrier": "", "line_type": "Wireless"},
            "to": [
                {
                    "phone_number": to,
                    "status": "webhook_delivered",
                    "carrier": "Telnyx",
                    "line_type": "VoIP",
                }
            ],
            "cc": [],
            "text": text,
            "media": [],
            "encoding": encoding_of(text),
            "parts": segment_count(text),
            "tags": [],
            "cost": None,
            "received_at": now,
            "sent_at": None,
            "completed_at": None,
            "valid_until": None,
            "errors": [],
        },
    )


async def post_signed_event(
    client: httpx.AsyncClient,
    url: str,
    data: dict[str, Any],
    private_key: Ed25519PrivateKey,
    *,
    attempt: int = 1,
    timestamp: int | None = None,
) -> httpx.Response:
    """POST one webhook `data` to `url` in Telnyx's envelope, signed at `timestamp` (now)."""
    body = json.dumps({"data": data, "meta": {"attempt": attempt, "delivered_to": url}}).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(private_key, stamp, body),
        TIMESTAMP_HEADER: stamp,
    }
    return await client.post(url, content=body, headers=headers)


class WebhookPoster:
    """Posts webhooks from the event loop that calls `post`; the webhooks of one message go
    out in the order they were made. A URL that fails (no answer in `timeout`, or not 2xx)
    is tried `attempts` times with backoff, then the next URL; nothing raises into the
    emulator."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        attempts: int = 3,
        backoff: float = 0.1,
        timeout: float = 2.0,
        concurrency: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.private_key = private_key
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.concurrency = concurrency
        self.transport = transport
        self.delivered = 0
        self.dropped = 0
        self._generation = 0
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def post(self, key: str, urls: list[str], data: dict[str, Any]) -> None:
        """Deliver `data` to the first of `urls` that takes it, after `key`'s earlier ones."""
        if not urls:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._tails = {}
            self._http = httpx.AsyncClient(
                timeout=self.timeout,
                limits=httpx.Limits(max_connections=self.concurrency),
                transport=self.transport,
            )
            self._slots = asyncio.Semaphore(self.concurrency)
        previous = self._tails.get(key)
        task = loop.create_task(self._after(previous, urls, data, self._generation))
        self._tails[key] = task
        self._pending.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))

    def discard_pending(self) -> None:
        # Bumping the generation makes queued deliveries give up before posting.
        self._generation += 1
        self.delivered = 0
        self.dropped = 0

    async def aclose(self) -> None:
        pending, self._pending, self._tails = list(self._pending), set(), {}
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.aclose()
        self._http = None
        self._loop = None

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]

    async def _after(
        self,
        previous: asyncio.Task[None] | None,
        urls: list[str],
        data: dict[str, Any],
        generation: int,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # however it ended
        assert self._slots is not None
        async with self._slots:
            try:
                await self._deliver(urls, data, generation)
            except Exception:  # a sandbox bug must not stop later webhooks
                logger.exception("webhook delivery crashed")

    async def _deliver(self, urls: list[str], data: dict[str, Any], generation: int) -> None:
        assert self._http is not None
        for url in urls:
            for attempt in range(1, self.attempts + 1):
                if generation != self._generation:
                    return
                try:
                    response = await post_signed_event(
                        self._http, url, data, self.private_key, attempt=attempt
                    )
                except httpx.HTTPError as exc:
                    logger.debug("webhook to %s failed: %r", url, exc)
                else:
                    if response.is_success:
                        self.delivered += 1
                        return
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        self.dropped += 1
        logger.info("dropped a %s webhook to %s", data.get("event_type"), urls)
