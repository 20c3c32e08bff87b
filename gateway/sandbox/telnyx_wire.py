"""Telnyx's wire vocabulary for the sandbox: error bodies, ids, times, encodings and costs.

Everything here mirrors what api.telnyx.com answers (Messaging API v2) so that a client
written against the sandbox works unchanged against Telnyx.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from starlette.responses import JSONResponse

# The GSM alphabet is the carriers', not Twilio's: one table serves both emulators.
from gateway.sandbox.twilio_wire import _GSM7_BASIC, _GSM7_EXTENSION, segment_count

__all__ = [
    "DELIVERY_ERRORS",
    "ERRORS",
    "amount",
    "encoding_of",
    "error_response",
    "iso",
    "new_id",
    "segment_count",
]

# (title, detail) of each error the sandbox answers; `{src}` and `{dst}` are filled in.
ERRORS: dict[str, tuple[str, str]] = {
    "10004": ("Missing required parameter", "A required parameter was missing."),
    "10005": ("Resource not found", "The requested resource or URL could not be found."),
    "10006": ("Invalid ID", "The resource ID provided was invalid."),
    "10007": ("Unexpected error", "An unexpected error occured."),
    "10009": (
        "Authentication failed",
        "The required authentication headers were either invalid or not included in the request.",
    ),
    "10011": ("Too many requests", "You have exceeded the maximum number of allowed requests."),
    "10015": ("Bad Request", "The request failed because it was not well-formed."),
    "40300": (
        "Blocked due to STOP message",
        "Messages cannot be sent from {src} to {dst} due to an existing block rule.",
    ),
    "40305": ("Invalid 'from' address", "The 'from' address cannot send messages."),
    "40310": ("Invalid 'to' address", "The 'to' address should be a single valid number."),
}
# Errors a message.finalized webhook (and the message itself) carries after a failed delivery.
DELIVERY_ERRORS: dict[str, tuple[str, str]] = {
    "40001": (
        "Not routable",
        "The destination number is either a landline or a non-routable wireless number.",
    ),
}


def error_response(
    status: int,
    code: str,
    *,
    pointer: str | None = None,
    headers: dict[str, str] | None = None,
    src: str = "",
    dst: str = "",
) -> JSONResponse:
    title, detail = ERRORS[code]
    error: dict[str, object] = {
        "code": code,
        "title": title,
        "detail": detail.format(src=src, dst=dst),
        "meta": {"url": f"https://developers.telnyx.com/api/errors/{code}"},
    }
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return JSONResponse({"errors": [error]}, status_code=status, headers=headers)


def new_id() -> str:
    return str(uuid.uuid4())


def iso(moment: datetime | None) -> str | None:
    """Telnyx's timestamps: ISO 8601 with milliseconds and the UTC offset."""
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def encoding_of(text: str) -> str:
    gsm = all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in text)
    return "GSM-7" if gsm else "UCS-2"


def amount(per_part: str, parts: int) -> str:
    return str((Decimal(per_part) * parts).quantize(Decimal("0.0001")))
