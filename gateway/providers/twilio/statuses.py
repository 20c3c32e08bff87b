"""Twilio's message status vocabulary and its delivery error codes, in our words."""

from __future__ import annotations

from typing import Any

from gateway.domain.messages import StatusReport

# Twilio's MessageStatus -> ours: everything before a final status is "sent" (Twilio has it)
STATUS = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "read": "read",
    "canceled": "canceled",
}
# Delivery errors a carrier reports (https://www.twilio.com/docs/api/errors).
ERRORS = {
    "30001": "queue overflow at the carrier",
    "30003": "unreachable destination handset",
    "30004": "message blocked by the recipient or carrier",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error from the carrier",
}


def report(
    provider_status: str,
    source: str,
    payload: dict[str, Any],
    *,
    error_code: str | None = None,
    provider_message_id: str | None = None,
    message_id: str | None = None,
) -> StatusReport | None:
    """A Twilio status as our StatusReport; None for a status we do not know."""
    status = STATUS.get(provider_status)
    if status is None:
        return None
    reason = None
    if error_code:
        reason = ERRORS.get(error_code, f"provider error {error_code}")
    return StatusReport(
        status=status,
        provider_status=provider_status,
        source=source,
        payload=payload,
        error_code=error_code or None,
        error_reason=reason,
        provider_message_id=provider_message_id,
        message_id=message_id,
        provider="twilio",
    )
