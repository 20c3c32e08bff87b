"""Creating a message on Twilio's REST API without the `twilio` library's request machinery.

The library spends ~0.9 ms of CPU on every send (its layers of request objects, header
building, response wrappers and instance classes); the dispatcher's hot path needs one form
POST. This module builds the very request the library would send — same URL
(`/2010-04-01/Accounts/{sid}/Messages.json`), basic auth, headers and form fields in the
library's order — and reads the answer as the library does: a 2xx body is the message
resource; anything else is turned into the library's own exception
(`twilio.base.version.Version.exception`), so an error is classified exactly as before.
Look-ups, signatures and TwiML stay on the library.
"""

from __future__ import annotations

import base64
import json
import platform
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from twilio import __version__ as TWILIO_VERSION
from twilio.base.exceptions import TwilioException
from twilio.base.version import Version
from twilio.http.response import Response as TwilioResponse

_CREATE_FAILED = "Unable to create record"  # the library's message for a failed create


def library_headers() -> dict[str, str]:
    """The headers `twilio.base.client_base.ClientBase` puts on a create (POST)."""
    agent = (
        f"twilio-python/{TWILIO_VERSION} ({platform.system()} {platform.machine()}) "
        f"Python/{platform.python_version()}"
    )
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        "User-Agent": agent,
        "X-Twilio-Client": f"python-{TWILIO_VERSION}",
        "Accept-Charset": "utf-8",
    }


def basic_auth(account_sid: str, auth_token: str) -> str:
    credentials = f"{account_sid}:{auth_token}".encode()
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def message_form(
    to: str, sender: str | None, body: str | None, status_callback: str | None
) -> list[tuple[str, str]]:
    """The form fields of `messages.create(...)`, in the library's order; a sender that is
    a Messaging Service sid (MG…) goes as MessagingServiceSid, any other as From; a None
    is left out, as the library leaves it."""
    fields = [("To", to)]
    if status_callback:
        fields.append(("StatusCallback", status_callback))
    if sender and sender.startswith("MG"):
        fields.append(("MessagingServiceSid", sender))
    elif sender is not None:
        fields.append(("From", sender))
    if body is not None:
        fields.append(("Body", body))
    return fields


@dataclass(frozen=True, slots=True)
class MessagesEndpoint:
    """Where and how to create messages for one account: the URL (on `base_url`, which the
    sandbox replaces) and the headers of every request, computed once."""

    url: str
    headers: dict[str, str]

    @classmethod
    def for_account(cls, base_url: str, account_sid: str, auth_token: str) -> MessagesEndpoint:
        path = f"/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages.json"
        headers = {**library_headers(), "Authorization": basic_auth(account_sid, auth_token)}
        return cls(base_url.rstrip("/") + path, headers)

    @staticmethod
    def encode(fields: list[tuple[str, str]]) -> bytes:
        return urlencode(fields).encode("ascii")


def created_resource(status: int, text: str, url: str) -> dict[str, Any]:
    """The message resource of a create's answer; a non-2xx answer raises the exception the
    library raises for it (TwilioRestException, or TwilioServiceException for an RFC 9457
    body)."""
    if status < 200 or status >= 300:
        raise _library_error(status, text, url)
    if not text:
        return {}
    payload = json.loads(text)
    return payload if isinstance(payload, dict) else {}


def _library_error(status: int, text: str, url: str) -> TwilioException:
    error: TwilioException = Version.exception(
        "POST", url, TwilioResponse(status, text), _CREATE_FAILED
    )
    return error
