"""The operator's own numbers: the shared line (`TWILIO_PHONE_NUMBER`), the Telnyx sender
(`TELNYX_PHONE_NUMBER`) and any other number the operator lists in `OPERATOR_NUMBERS`. No
tenant can claim one as a forwarding or dedicated number, and none of them ever routes a call,
an inbound SMS or an assistant request to a tenant by ownership: on an operator number the
traffic of every tenant arrives, and who it belongs to is decided by other rules.

The settings are E.164 already: a malformed number stopped start-up (`gateway.settings_types`).
"""

from __future__ import annotations

from gateway.config import Settings


def operator_numbers(settings: Settings) -> frozenset[str]:
    typed = settings.typed
    shared = (typed.twilio_phone_number, typed.telnyx_phone_number)
    return frozenset(number for number in (*shared, *typed.operator_numbers) if number)
