"""Telnyx's delivery statuses and delivery error codes, in our words.

A message's status is that of its recipient (`to[0].status`): queued, sending, sent,
delivered, sending_failed (it never left Telnyx), delivery_failed (the carrier refused it),
delivery_unconfirmed (sent, but no carrier receipt came) and expired.
"""

from __future__ import annotations

from typing import Any

from gateway.domain.messages import StatusReport

# Everything before a final word is "sent": Telnyx has taken the message. An unconfirmed
# delivery stays "sent" too: claiming it delivered (or lost) would be a guess.
STATUS = {
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivery_unconfirmed": "sent",
    "delivered": "delivered",
    "sending_failed": "failed",
    "delivery_failed": "undelivered",
    "expired": "undelivered",
}
# Delivery errors (https://developers.telnyx.com/docs/messaging/messages/error-codes).
ERRORS = {
    "40001": "landline or non-routable number",
    "40002": "blocked as spam by the carrier (temporary)",
    "40003": "blocked as spam by the carrier (permanent)",
    "40004": "rejected by the destination carrier",
    "40005": "message expired before delivery",
    "40006": "recipient's carrier unavailable",
    "40008": "undeliverable",
    "40009": "message body rejected",
    "40011": "carrier throughput limit exceeded",
    "40012": "invalid destination number",
    "40013": "invalid source number",
    "40014": "expired in Telnyx's queue",
    "40015": "blocked by Telnyx's spam filter",
}


def recipient(record: dict[str, Any]) -> dict[str, Any]:
    """The first (for SMS the only) entry of a message's `to` list."""
    to = record.get("to")
    if isinstance(to, list) and to and isinstance(to[0], dict):
        return to[0]
    return {}


def first_error(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """The code of the message's first error and a sentence for it, if it has one."""
    errors = record.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    code = str(errors[0].get("code") or "") or None
    said = errors[0].get("detail") or errors[0].get("title")
    if code is None:
        return None, str(said) if said else None
    return code, ERRORS.get(code) or (str(said) if said else f"provider error {code}")


def cost(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """`cost.amount` and `cost.currency`, when Telnyx has priced the message."""
    found = record.get("cost")
    if not isinstance(found, dict) or found.get("amount") in (None, ""):
        return None, None
    currency = found.get("currency")
    return str(found["amount"]), str(currency) if currency else None


def report(
    record: dict[str, Any],
    source: str,
    payload: dict[str, Any],
    *,
    message_id: str | None = None,
    at: str | None = None,
) -> StatusReport | None:
    """A Telnyx message record (a webhook's payload or a retrieved message) as our
    StatusReport; None for a status we do not know."""
    provider_status = str(recipient(record).get("status") or "")
    status = STATUS.get(provider_status)
    if status is None:
        return None
    code, reason = first_error(record)
    price, unit = cost(record)
    return StatusReport(
        status=status,
        provider_status=provider_status,
        source=source,
        payload=payload,
        error_code=code,
        error_reason=reason,
        provider_message_id=str(record.get("id") or "") or None,
        message_id=message_id,
        at=at,
        provider="telnyx",
        price=price,
        price_unit=unit,
    )
