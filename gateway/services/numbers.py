"""The operator's own numbers: the shared line (`TWILIO_PHONE_NUMBER`) and any other number
the operator lists in `OPERATOR_NUMBERS` (comma-separated E.164). No tenant can claim one as
a forwarding or dedicated number, and none of them ever routes a call, an inbound SMS or an
assistant request to a tenant by ownership: on an operator number the traffic of every
tenant arrives, and who it belongs to is decided by other rules."""

from __future__ import annotations

from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.validation import normalize_e164


def operator_numbers(settings: Settings) -> frozenset[str]:
    found: set[str] = set()
    for name in ("TWILIO_PHONE_NUMBER", "OPERATOR_NUMBERS"):
        for raw in (settings.get(name) or "").split(","):
            if not raw.strip():
                continue
            try:
                found.add(normalize_e164(raw))
            except ValueError as exc:
                raise ConfigError(f"{name}: {raw.strip()!r} {exc}") from None
    return frozenset(found)
