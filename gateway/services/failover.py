"""SMS provider failover: the operator lists providers in order (`SMS_PROVIDERS`, or a
tenant's `providers` operator setting); a message goes to the first configured one whose
circuit is closed.

A provider's circuit opens when it has failed `after` times in a row *before taking the
message* (it could not be reached, 429, 5xx: the message is certainly not there, so another
provider may send it). It stays open `open_seconds`; then one message tries it again
(half-open): success closes the circuit and the provider takes its traffic back, failure
opens it again. An unknown outcome — a request that left without an answer — never fails a
message over: it is reconciled with the provider it went to, because a duplicate SMS is a
defect. The circuits are this process's view; each instance keeps its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.providers.registry import Providers


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    trial: bool = False  # half-open: one message is trying it


class Failover:
    """Consecutive pre-acceptance failures per provider, and the circuits they open."""

    def __init__(
        self,
        after: int = 3,
        open_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after = max(1, after)
        self.open_seconds = open_seconds
        self.clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, provider: str) -> _Circuit:
        return self._circuits.setdefault(provider, _Circuit())

    def is_open(self, provider: str) -> bool:
        circuit = self._circuits.get(provider)
        return circuit is not None and circuit.open_until > self.clock()

    def choose(self, order: list[str]) -> str | None:
        """The provider for the next attempt: the first whose circuit lets a message through
        (a half-open circuit lets one through at a time); when every circuit is open, the
        one that reopens first."""
        now = self.clock()
        for provider in order:
            circuit = self._circuit(provider)
            if circuit.failures < self.after:
                return provider
            if circuit.open_until <= now and not circuit.trial:
                circuit.trial = True
                return provider
        if not order:
            return None
        return min(order, key=lambda p: self._circuit(p).open_until)

    def preferred(self, order: list[str]) -> str | None:
        """The provider a message accepted now should name (no trial is taken: the
        dispatcher chooses again when it sends)."""
        return next((p for p in order if not self.is_open(p)), order[0] if order else None)

    def succeeded(self, provider: str) -> None:
        """The provider answered (it took the message, or refused it for a reason of the
        message's own): it is healthy."""
        self._circuits[provider] = _Circuit()

    def failed(self, provider: str) -> bool:
        """A failure before the provider took the message; True when its circuit is open."""
        circuit = self._circuit(provider)
        circuit.failures += 1
        circuit.trial = False
        if circuit.failures >= self.after:
            circuit.open_until = self.clock() + self.open_seconds
            return True
        return False

    def released(self, provider: str) -> None:
        """An attempt that says nothing of the provider's health (its outcome is unknown):
        a half-open trial may be given to the next message."""
        circuit = self._circuits.get(provider)
        if circuit is not None:
            circuit.trial = False

    def state(self) -> dict[str, dict[str, Any]]:
        """Each provider's consecutive failures and whether its circuit is open."""
        return {
            name: {"failures": c.failures, "open": c.open_until > self.clock()}
            for name, c in self._circuits.items()
        }


class SmsRouting:
    """Which SMS provider sends a tenant's message, and from which number."""

    def __init__(self, providers: Providers, order: tuple[str, ...], failover: Failover) -> None:
        self.providers = providers
        self.default_order = order
        self.failover = failover
        self._configured: frozenset[str] | None = None

    def configured(self) -> frozenset[str]:
        """The SMS providers the operator configured (built once: asked on every send)."""
        if self._configured is None:
            self._configured = frozenset(
                name for name in self.names() if self.providers.sender(name) is not None
            )
        return self._configured

    def order(self, operator: Mapping[str, Any]) -> list[str]:
        """The tenant's providers, first first (its own list when the operator set one, else
        `SMS_PROVIDERS`), keeping those the operator has configured."""
        chosen = operator.get("providers") or self.default_order
        configured = self.configured()
        return [name for name in chosen if name in configured]

    def names(self) -> tuple[str, ...]:
        """Every SMS provider the gateway knows (configured or not)."""
        return tuple(self.providers.names("sms"))

    def ready(self, operator: Mapping[str, Any]) -> bool:
        """Whether one of the tenant's providers is configured and has a number to send
        from."""
        return any(self.sender(name, operator) for name in self.order(operator))

    def primary(self, operator: Mapping[str, Any]) -> str:
        order = list(operator.get("providers") or self.default_order)
        return str(order[0])

    def choose(self, operator: Mapping[str, Any]) -> str | None:
        """The provider for an attempt starting now (may take a half-open trial)."""
        return self.failover.choose(self.order(operator))

    def preferred(self, operator: Mapping[str, Any]) -> str:
        """The provider to record on a message accepted now."""
        return self.failover.preferred(self.order(operator)) or self.primary(operator)

    def record(self, provider: str, outcome: str, operator: Mapping[str, Any]) -> float | None:
        """How an attempt through `provider` went (`ok`, or a `ProviderError` kind); returns
        the delay of the message's retry when it should go to the next provider now (None:
        the usual backoff)."""
        if outcome in ("ok", "permanent"):  # it answered: healthy
            self.failover.succeeded(provider)
        elif outcome == "transient":  # certainly not taken: it counts against the provider
            if self.failover.failed(provider) and any(
                other != provider and not self.failover.is_open(other)
                for other in self.order(operator)
            ):
                return 0.0  # its circuit is open and the next provider can take it now
        else:  # unknown or configuration: nothing said of its health
            self.failover.released(provider)
        return None

    def sender(self, provider: str, operator: Mapping[str, Any]) -> str | None:
        """The number `provider` sends the tenant's SMS from: the sender the operator set
        for the tenant belongs to the tenant's primary provider (a number bought there);
        any other provider sends from its own number."""
        if operator.get("sender") and provider == self.primary(operator):
            return str(operator["sender"])
        return self.providers.default_sender(provider)
