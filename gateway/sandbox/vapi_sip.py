"""Vapi's SIP phone numbers as the Vapi emulator keeps them, and the call Vapi makes of a SIP
INVITE to one.

`POST /phone-number` is validated like Vapi's API: the body's `provider` picks the DTO
(`vapi` is the one emulated), properties outside it are refused ("property x should not
exist", NestJS's whitelist), `sipUri` must be `sip:<username>@<sip host>` and is unique
without regard to case, `name` takes 40 characters, `server.url` must be a URL, and SIP
authentication credentials take 20 to 40 characters. A `vapi` number without `sipUri` is a
free phone number, as on Vapi.

`invite` reads a `<Dial><Sip>` address as Twilio sends it (`sip:user@host?X-Name=value&…`:
the query becomes the INVITE's headers, values URL-decoded), and `sip_call` is the call
object Vapi builds for it: its SIP details carry every header of the INVITE, and each `x-`
header also becomes a template variable named without the prefix, in lower case.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

PROVIDERS = ("byo-phone-number", "twilio", "vonage", "vapi", "telnyx")
# fmt: off
CREATE_FIELDS = frozenset({
    "provider", "fallbackDestination", "hooks", "numberDesiredAreaCode", "sipUri",
    "authentication", "name", "assistantId", "workflowId", "squadId", "server",
})
# fmt: on
UPDATE_FIELDS = CREATE_FIELDS - {"provider", "numberDesiredAreaCode"}
_SIP_USER = r"[A-Za-z0-9._~!$&'()*+,;=-]+"
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


def number_problems(body: Any, sip_host: str, *, creating: bool) -> list[str]:
    """What Vapi's validation says of a phone-number body (empty: valid)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    if creating and body.get("provider") not in PROVIDERS:
        return ["provider must be one of the following values: " + ", ".join(PROVIDERS)]
    if creating and body["provider"] != "vapi":
        return [f"the sandbox emulates provider vapi only, not {body['provider']}"]
    allowed = CREATE_FIELDS if creating else UPDATE_FIELDS
    problems = [f"property {key} should not exist" for key in body if key not in allowed]
    for key in ("name", "assistantId", "workflowId", "squadId", "numberDesiredAreaCode"):
        if key in body and body[key] is not None and not isinstance(body[key], str):
            problems.append(f"{key} must be a string")
    name = body.get("name")
    if isinstance(name, str) and len(name) > 40:
        problems.append("name must be shorter than or equal to 40 characters")
    if "sipUri" in body and sip_user(body["sipUri"], sip_host) is None:
        problems.append(f"sipUri must be in the format sip:username@{sip_host}")
    problems += _server_problems(body.get("server"))
    problems += _authentication_problems(body.get("authentication"))
    return problems


def sip_user(uri: Any, sip_host: str) -> str | None:
    """The username of `sip:<username>@<sip_host>` (None: not such a URI)."""
    if not isinstance(uri, str):
        return None
    found = re.fullmatch(rf"sip:({_SIP_USER})@{re.escape(sip_host)}", uri, re.IGNORECASE)
    return found.group(1) if found else None


def _server_problems(server: Any) -> list[str]:
    if server is None:
        return []
    if not isinstance(server, dict):
        return ["nested property server must be either object or array"]
    url = server.get("url")
    if url is not None and (not isinstance(url, str) or not _URL.fullmatch(url)):
        return ["server.url must be a URL address"]
    return []


def _authentication_problems(authentication: Any) -> list[str]:
    if authentication is None:
        return []
    if not isinstance(authentication, dict):
        return ["nested property authentication must be either object or array"]
    problems = []
    for key in ("username", "password"):
        value = authentication.get(key)
        if not isinstance(value, str):
            problems.append(f"authentication.{key} must be a string")
        elif not 20 <= len(value) <= 40:
            problems.append(f"authentication.{key} must be 20 to 40 characters long")
    return problems


def new_number(body: Mapping[str, Any], org_id: str, free_number: str) -> dict[str, Any]:
    now = iso(datetime.now(UTC))
    number: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "orgId": org_id,
        "provider": "vapi",
        "status": "active",
        **body,
        "createdAt": now,
        "updatedAt": now,
    }
    if "sipUri" not in body:
        number["number"] = free_number
    return number


def invite(address: str) -> tuple[str, dict[str, str]]:
    """The SIP URI dialled and the headers of the INVITE, from a `<Sip>` address."""
    uri, _, query = address.strip().partition("?")
    headers: dict[str, str] = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        headers[unquote(name)] = unquote(value)
    return uri, headers


def sip_call(
    number: Mapping[str, Any],
    caller: str,
    headers: Mapping[str, str],
    org_id: str,
) -> dict[str, Any]:
    """The call object Vapi makes of an INVITE to `number` from `caller`."""
    sip_headers = {
        "to": f"<{number['sipUri']}>",
        "from": f"<sip:{caller}@sip.twilio.com>",
        **headers,
    }
    variables = {
        name[2:].lower(): value for name, value in headers.items() if name.lower().startswith("x-")
    }
    sip = {"uri": number["sipUri"], "headers": sip_headers}
    return {
        "id": str(uuid.uuid4()),
        "orgId": org_id,
        "type": "inboundPhoneCall",
        "phoneCallProvider": "vapi",
        "phoneCallTransport": "sip",
        "phoneNumberId": number["id"],
        "customer": {"number": caller},
        "status": "ringing",
        "phoneCallProviderDetails": {"sip": sip},
        "transport": {"provider": "vapi.sip", "sip": sip},
        "assistantOverrides": {"variableValues": variables},
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
