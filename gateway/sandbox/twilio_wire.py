"""Twilio's wire vocabulary for the sandbox: error bodies, sids, dates, segments and prices.

Everything here mirrors what api.twilio.com answers so that a client written against the
sandbox works unchanged against Twilio.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from email.utils import format_datetime

from starlette.responses import JSONResponse

API_VERSION = "2010-04-01"
JSON_TYPE = "application/json; charset=utf-8"

# Twilio's message for each error code the sandbox can answer; `{to}` and `{path}` are filled in.
ERROR_MESSAGES: dict[int, str] = {
    20001: "Invalid paging parameter",
    20003: "Authenticate",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    30006: "Landline or unreachable carrier",
}

MAX_BODY_CHARS = 1600

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Sent as escape + char, so each costs two septets.
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


def error_response(
    status: int,
    code: int,
    *,
    to: str = "",
    path: str = "",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    message = ERROR_MESSAGES[code].format(to=to, path=path)
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


def raw_dlr_done_date(moment: datetime) -> str:
    # Carriers' delivery receipts carry minute precision as YYMMDDhhmm.
    return moment.strftime("%y%m%d%H%M")


def segment_count(body: str) -> int:
    """Segments Twilio bills for `body`: GSM-7 160/153 septets, else UCS-2 70/67 code units."""
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENSION for ch in body):
        weights = [2 if ch in _GSM7_EXTENSION else 1 for ch in body]
        single, part = 160, 153
    else:
        weights = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
        single, part = 70, 67
    if sum(weights) <= single:
        return 1
    # A character (escape pair or surrogate pair) is never split across parts.
    parts, used = 1, 0
    for weight in weights:
        if used + weight > part:
            parts, used = parts + 1, 0
        used += weight
    return parts


def price_for(price_per_segment: str, segments: int) -> str:
    total = Decimal(price_per_segment) * segments
    return str(total.quantize(Decimal("0.00001")))
