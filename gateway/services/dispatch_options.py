"""The dispatcher's settings (DISPATCH_*, PROVIDER_TIMEOUT_SECONDS, STATUS_POLL_SECONDS …),
read once from the gateway's settings; the README's dispatcher table explains each."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Settings


@dataclass
class DispatchSettings:
    concurrency: int = 32
    batch: int = 64
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    per_sender_rate: float = 50.0  # messages per second per sender
    reconcile_delay: float = 30.0
    reconcile_skew: float = 60.0
    provider_timeout: float = 10.0
    price_delay: float = 5.0
    price_checks: int = 5
    status_poll: float = 900.0
    poll_checks: int = 8
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
            reconcile_skew=number("DISPATCH_RECONCILE_SKEW_SECONDS", 60.0),
            provider_timeout=number("PROVIDER_TIMEOUT_SECONDS", 10.0),
            price_delay=number("PRICE_FETCH_DELAY_SECONDS", 5.0),
            status_poll=number("STATUS_POLL_SECONDS", 900.0),
            poll_interval=number("DISPATCH_POLL_SECONDS", 0.5),
        )
