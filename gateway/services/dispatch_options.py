"""The dispatcher's settings (DISPATCH_*, PROVIDER_TIMEOUT_SECONDS, STATUS_POLL_SECONDS …),
taken once from the typed settings (`gateway.settings_model`, where each has its default);
the README's dispatcher table explains each."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Settings


@dataclass
class DispatchSettings:
    concurrency: int
    max_attempts: int
    backoff_base: float
    backoff_max: float
    per_sender_rate: float  # messages per second per sender
    reconcile_delay: float
    reconcile_skew: float
    provider_timeout: float
    price_delay: float
    status_poll: float
    poll_interval: float
    lease: float = 60.0  # a claim's life without renewal (>= 3 provider timeouts)
    # not settings: how many due rows one pass claims, how often a price or a status is asked
    batch: int = 64
    price_checks: int = 5
    poll_checks: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchSettings:
        typed = settings.typed
        return cls(
            concurrency=typed.dispatch_concurrency,
            max_attempts=typed.dispatch_max_attempts,
            backoff_base=typed.dispatch_backoff_seconds,
            backoff_max=typed.dispatch_backoff_max_seconds,
            per_sender_rate=typed.dispatch_per_sender_rate,
            reconcile_delay=typed.dispatch_reconcile_seconds,
            reconcile_skew=typed.dispatch_reconcile_skew_seconds,
            provider_timeout=typed.provider_timeout_seconds,
            price_delay=typed.price_fetch_delay_seconds,
            status_poll=typed.status_poll_seconds,
            poll_interval=typed.dispatch_poll_seconds,
            lease=max(typed.dispatch_lease_seconds, 3 * typed.provider_timeout_seconds),
        )
