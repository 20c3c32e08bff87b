"""The two systems the peer benchmark loads, each behind the same small shape: its URL, the
wrk script of its one request kind, what it says it accepted, whether its downstream emulator
has caught up, and a line on what reached that emulator.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from bench import common
from bench.common import LoadResult, Proc, Workspace
from bench.peer import jasmin, load
from bench.peer.smpp_server import read_counts

UNPACED = "1000000"  # DISPATCH_PER_SENDER_RATE never reached (0 is refused)
_DONE = ("sent", "failed", "delivered", "undelivered")
_T = TypeVar("_T")


@dataclass
class Figures:
    runs: list[tuple[int, LoadResult]] = field(default_factory=list)  # measured, per concurrency
    answered_2xx: int = 0  # 2xx answers wrk counted, warm-ups included
    drain_seconds: list[float] = field(default_factory=list)  # after each concurrency


class Gateway:
    name = "gateway"
    label = "gateway: POST /api/channels/sms/send, dispatcher on"
    guarantees = (
        "202 only after the message and its event are committed (SQLite synchronous=FULL, "
        "group commit fsync'd); idempotency keys, suppressions, rate limit and validation "
        "checked before; a restart resumes every queued message"
    )

    def __init__(self, ws: Workspace) -> None:
        """bench.send `--dispatcher on`: the Twilio emulator (callbacks held) and the gateway
        sending every accepted message to it."""
        self.figures = Figures()
        _, self._twilio = common.start_twilio(ws, callback_delay=3600.0)
        self.gw = common.start_gateway(
            ws, DISPATCHER="on", TWILIO_API_BASE=self._twilio, DISPATCH_CONCURRENCY="8",
            DISPATCH_PER_SENDER_RATE=UNPACED,
        )  # fmt: skip
        self._key = common.create_tenant(self.gw, "bench-peer").key
        self.url = self.gw.url

    def script(self, slot: int) -> str:
        return load.gateway_script(self._key, slot)

    def statuses(self) -> Counter[str]:
        with common.connect(self.gw.db_path) as conn:
            sql = "SELECT status, COUNT(*) FROM channel_messages_log GROUP BY status"
            return Counter({str(status): int(n) for status, n in conn.execute(sql).fetchall()})

    def pending(self) -> int:
        """Accepted messages not yet at the emulator (queued or in flight)."""
        return sum(n for status, n in self.statuses().items() if status not in _DONE)

    def downstream(self) -> str:
        counts = self.statuses()
        held = httpx.get(self._twilio + "/_sandbox/messages", timeout=120).json()
        recipients = len({message["to"] for message in held["messages"]})
        states = ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))
        return (
            f"{sum(counts.values()):,} rows committed ({states or 'none'}) → Twilio emulator: "
            f"{int(held['create_requests']):,} create requests, {recipients:,} distinct "
            "recipients"
        )


class Jasmin:
    name = "jasmin"
    label = f"Jasmin {jasmin.VERSION}: GET /send (HTTP API)"
    guarantees = (
        "200 once the message is published to RabbitMQ: the queue is not durable (a broker "
        "restart loses every queued message), publishes are not confirmed, and after a broker "
        "restart it answers 200 while delivering nothing"
    )

    def __init__(self, ws: Workspace, setup: list[str]) -> None:
        """Our SMPP server, RabbitMQ, Redis, jasmind, then jCli; `setup` gets each step's
        time."""
        self.figures = Figures()
        venv = timed(setup, f"Jasmin's virtualenv ({jasmin.VERSION}, made once)",
                     jasmin.ensure_jasmin)  # fmt: skip
        smsc_port, self._stats = common.free_port(), common.free_port()
        argv = [*common.pinned("helper"), sys.executable, "-m", "bench.peer.smpp_server",
                "--port", str(smsc_port), "--stats-port", str(self._stats)]  # fmt: skip
        self._smsc: Proc = jasmin.start_group(ws, "smsc", argv, common.child_env())
        jasmin.wait_port(self._stats, self._smsc, 15)
        amqp = timed(setup, "RabbitMQ start", lambda: jasmin.start_rabbitmq(ws))
        redis = timed(setup, "Redis start", lambda: jasmin.start_redis(ws))
        node = timed(setup, "jasmind start", lambda: jasmin.start_jasmind(ws, venv, amqp, redis))
        timed(setup, "jCli configuration", lambda: jasmin.configure(node, smsc_port))
        self._node = node
        self.url = node.http_url
        self._accepted = jasmin.AcceptedCount(jasmin.http_api_log(ws))
        self._wait_bound()

    def _wait_bound(self, timeout: float = 30.0) -> None:
        """Until the connector has bound to our SMPP server (messages sent before would wait
        in RabbitMQ for the bind, and the first figures would measure that)."""
        deadline = time.monotonic() + timeout
        while self.counts()["binds"] < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("Jasmin's SMPP connector did not bind to the SMPP server")
            time.sleep(0.2)

    def script(self, slot: int) -> str:
        return load.jasmin_script(self._node.username, self._node.password, slot)

    def counts(self) -> dict[str, int]:
        return read_counts(common.HOST, self._stats)

    def pending(self) -> int:
        """Accepted messages not yet at the SMPP server (in RabbitMQ or in flight)."""
        return max(0, self._accepted() - self.counts()["submit_sm"])

    def downstream(self) -> str:
        counts = self.counts()
        return (
            f"{self._accepted():,} messages in Jasmin's HTTP API log → SMPP server: "
            f"{counts['submit_sm']:,} submit_sm, {counts['destinations']:,} distinct "
            f"destinations ({counts['binds']} bind, {counts['malformed']} malformed)"
        )


def timed(setup: list[str], label: str, step: Callable[[], _T]) -> _T:
    began = time.perf_counter()
    with common.timed(label):
        value = step()
    setup.append(f"{label} {time.perf_counter() - began:.1f} s")
    return value
