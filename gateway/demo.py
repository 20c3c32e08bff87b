"""`gateway demo`: the whole story of a forwarded call in one command, on loopback only.

It starts the Twilio and Vapi emulators and a gateway on a scratch database in a temporary
folder (removed at the end), each on a free port of 127.0.0.1, then plays every party:

1. the operator creates a tenant, provisions its Vapi assistant, turns phone and SMS on;
2. a client calls the tenant's business number, which forwards to the shared line: Twilio's
   signed voice webhook (with `ForwardedFrom`) reaches the gateway, which bridges it to Vapi;
3. Vapi's assistant calls `check_availability` and `book_appointment`, then sends the
   end-of-call report, each signed with the server secret;
4. the confirmation SMS goes out through the Twilio emulator, whose status callbacks carry it
   to `delivered`, and its price gives the cost and margin;

and prints the call, the message and the KPIs the tenant's API answers. The emulators are
development tooling (not in the runtime wheel): they are imported when the demo runs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

import httpx

from gateway.app import create_app
from gateway.config import load_settings

if TYPE_CHECKING:
    from gateway.sandbox.twilio_api import TwilioSandbox
    from gateway.sandbox.vapi_api import VapiSandbox

ACCOUNT_SID = "AC" + "de" * 16
AUTH_TOKEN = "demo-twilio-auth-token"
SHARED_LINE = "+33939035761"
BUSINESS_NUMBER = "+33145678901"
CALLER = "+33601020304"
VAPI_KEY = "demo-vapi-private-key"
VAPI_SECRET = "demo-vapi-server-secret"
VAPI_NUMBER_ID = "pn-demo-shared-line"
TIMEZONE = "Europe/Paris"
EVERY_DAY = {
    day: [{"open": "09:00", "close": "18:00"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


class DemoError(Exception):
    """A step of the story did not answer as it should; the message says which."""


@dataclass
class _Stack:
    url: str
    scratch: Path
    twilio: TwilioSandbox
    vapi: VapiSandbox
    admin: dict[str, str]


@contextmanager
def _running_stack(callback_delay: float) -> Iterator[_Stack]:
    from gateway.sandbox import ecb_feed
    from gateway.sandbox.server import ServerThread, free_port
    from gateway.sandbox.twilio_api import TwilioSandbox
    from gateway.sandbox.vapi_api import VapiSandbox

    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-demo-")))
        twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=callback_delay)
        vapi = VapiSandbox(VAPI_KEY)
        twilio_url = stack.enter_context(ServerThread(twilio.app)).base_url
        # the Vapi emulator also serves the sandbox's exchange-rate feed: nothing leaves
        # the machine
        vapi_url = stack.enter_context(ServerThread(ecb_feed.with_feed(vapi.app))).base_url
        port = free_port()
        admin_key = secrets.token_urlsafe(24)
        environ = {
            "ADMIN_API_KEY": admin_key,
            "ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "DATABASE_PATH": str(scratch / "gateway.sqlite3"),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "TWILIO_API_BASE": twilio_url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": SHARED_LINE,
            "VAPI_API_BASE": vapi_url,
            "VAPI_API_KEY": VAPI_KEY,
            "VAPI_WEBHOOK_SECRET": VAPI_SECRET,
            "EXCHANGE_RATE_URL": f"{vapi_url}{ecb_feed.FEED_PATH}",
            "DISPATCH_POLL_SECONDS": "0.05",
            "PRICE_FETCH_DELAY_SECONDS": str(callback_delay),
            "PROVIDER_TIMEOUT_SECONDS": "5",
            "LOG_LEVEL": "WARNING",
        }
        # A configuration file that does not exist: nothing of the project's own settings
        # (.dev.vars, [vars], the environment) reaches the demo's gateway.
        settings = load_settings(scratch / "wrangler_like.toml", environ=environ)
        server = stack.enter_context(ServerThread(create_app(settings), port=port))
        yield _Stack(
            server.base_url, scratch, twilio, vapi, {"Authorization": f"Bearer {admin_key}"}
        )


def _ok(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 300:
        raise DemoError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json() if "json" in response.headers.get("content-type", "") else None


def _result(response: httpx.Response, what: str) -> Any:
    [answer] = _ok(response, what)["results"]
    if "error" in answer:
        raise DemoError(f"{what}: {answer['error']}")
    return json.loads(answer["result"])


async def _eventually(check: Callable[[], Awaitable[Any]], what: str, within: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (found := await check()):
        if loop.time() > deadline:
            raise DemoError(f"{what} did not happen within {within:.0f} s")
        await asyncio.sleep(0.05)
    return found


def _eur(value: Any) -> str:
    return "—" if value is None else f"{value:.4f} €"


class _Story:
    def __init__(self, stack: _Stack, http: httpx.AsyncClient, out: TextIO) -> None:
        self.stack = stack
        self.http = http
        self.out = out
        self.key: dict[str, str] = {}

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    async def tenant(self) -> str:
        http, admin = self.http, self.stack.admin
        created = _ok(
            await http.post(
                "/admin/tenants",
                headers=admin,
                json={"name": "Cabinet Dupont", "slug": "cabinet-dupont", "timezone": TIMEZONE},
            ),
            "creating the tenant",
        )
        tenant_id = str(created["tenant"]["id"])
        self.key = {"Authorization": f"Bearer {created['api_key']}"}
        phone = f"/admin/tenants/{tenant_id}/channels/phone/config"
        operator = {"vapi_phone_number_id": VAPI_NUMBER_ID, "price_per_minute": 0.15}
        _ok(await http.put(phone, headers=admin, json=operator), "operator phone settings")
        assistant = _ok(
            await http.post(f"/admin/tenants/{tenant_id}/assistant", headers=admin),
            "provisioning the Vapi assistant",
        )["operator_settings"]["vapi_assistant_id"]
        own = {
            "forwarding_numbers": [BUSINESS_NUMBER],
            "booking": {"opening_hours": EVERY_DAY, "slot_minutes": 30},
        }
        _ok(await http.put("/api/channels/phone/config", headers=self.key, json=own), "phone")
        for channel in ("phone", "sms"):
            _ok(
                await http.post(
                    f"/api/channels/{channel}/toggle", headers=self.key, json={"enabled": True}
                ),
                f"turning {channel} on",
            )
        self.say(f"1. Operator: tenant Cabinet Dupont created ({tenant_id}),")
        self.say(f"   its Vapi assistant provisioned ({assistant});")
        self.say("   the tenant sets its business number and turns phone and SMS on.")
        return str(assistant)

    async def call(self, assistant: str) -> dict[str, Any]:
        from gateway.sandbox.twilio_webhooks import post_signed_form, voice_call_params
        from gateway.sandbox.vapi_api import vapi_call

        params = voice_call_params(CALLER, SHARED_LINE, ACCOUNT_SID, forwarded_from=BUSINESS_NUMBER)
        url = f"{self.stack.url}/webhooks/twilio/voice"
        answer = await post_signed_form(self.http, url, params, AUTH_TOKEN)
        if answer.status_code != 200 or "<Stream" not in answer.text:
            raise DemoError(f"the voice webhook answered {answer.status_code} {answer.text[:300]}")
        if not self.stack.vapi.calls:
            raise DemoError("the gateway did not create a Vapi call")
        bridged = self.stack.vapi.calls[-1]
        self.say(f"2. {CALLER} calls the business number {BUSINESS_NUMBER}, forwarded to the")
        self.say(f"   shared line {SHARED_LINE}: Twilio posts the signed voice webhook")
        self.say(f"   (CallSid {params['CallSid']}, ForwardedFrom {BUSINESS_NUMBER}).")
        self.say(f"   The gateway bridges it to Vapi call {bridged['id']}")
        self.say("   and answers Twilio with Vapi's TwiML <Connect><Stream>.")
        return vapi_call(assistant, CALLER, call_id=bridged["id"], phone_number_id=VAPI_NUMBER_ID)

    async def conversation(self, call: dict[str, Any]) -> None:
        from gateway.sandbox.vapi_api import VapiServerMessenger

        vapi = VapiServerMessenger(f"{self.stack.url}/api/vapi/functions", VAPI_SECRET, self.http)
        day = (datetime.now(ZoneInfo(TIMEZONE)) + timedelta(days=1)).date().isoformat()
        offered = _result(
            await vapi.tool_calls(call, [("check_availability", {"date": day})]),
            "check_availability",
        )
        if not offered.get("slots"):
            raise DemoError(f"check_availability offered no slot on {day}: {offered}")
        slot = offered["slots"][0]
        self.say(f"3. Vapi calls the tool check_availability for {day}:")
        self.say(f"   “{offered['sentence']}”")
        arguments = {"name": "Léa Martin", "start": slot, "service": "Consultation"}
        booked = _result(
            await vapi.tool_calls(call, [("book_appointment", arguments)]), "book_appointment"
        )
        if booked.get("status") != "booked":
            raise DemoError(f"book_appointment answered {booked}")
        self.say(f"4. Vapi calls the tool book_appointment for Léa Martin at {slot}:")
        self.say(f"   {booked['status']}: “{booked['sentence']}”")
        started = datetime.now(UTC) - timedelta(seconds=95)
        report = await vapi.end_of_call_report(
            call,
            started,
            started + timedelta(seconds=95),
            0.12,
            transcript="AI: Cabinet Dupont, bonjour ! … User: Merci, au revoir.",
            summary="Léa Martin booked a consultation.",
        )
        _ok(report, "end-of-call-report")
        self.say("5. Vapi sends the end-of-call report: 95 s, Vapi cost 0.12 USD.")

    async def confirmation(self) -> dict[str, Any]:
        async def priced() -> dict[str, Any] | None:
            listing = _ok(await self.http.get("/api/messages", headers=self.key), "messages")
            for message in listing["messages"]:
                if message["status"] == "delivered" and message["margin"] is not None:
                    return dict(message)
            return None

        message = await _eventually(priced, "the confirmation SMS delivery", 30.0)
        detail = _ok(await self.http.get(f"/api/messages/{message['id']}", headers=self.key), "")
        steps = [e["status"] for e in detail.get("events", []) if e.get("status")]
        path = " → ".join(dict.fromkeys(["queued", *steps]))
        self.say("6. The confirmation SMS goes out through the Twilio emulator; its status")
        self.say(f"   callbacks carry it {path}, then the gateway fetches its price.")
        return dict(detail)

    async def report(self, message: dict[str, Any]) -> None:
        http, key = self.http, self.key
        [call] = _ok(await http.get("/api/calls", headers=key), "calls")["calls"]
        [appointment] = _ok(await http.get("/api/appointments", headers=key), "")["appointments"]
        messages = _ok(await http.get("/api/metrics/messages", headers=key), "metrics")
        calls = _ok(await http.get("/api/metrics/calls", headers=key), "call metrics")
        m, c = messages["current_period"], calls["current_period"]
        say = self.say
        say()
        say("Call")
        say(
            f"  {call['from']} → {call['to']} (forwarded from {call['forwarded_from']}), "
            f"tenant found by {call['resolved_by']}, {call['outcome']}, {call['status']}"
        )
        say(
            f"  {call['duration_seconds']:.0f} s, billed {call['billed_minutes']} min: "
            f"{_eur(call['billed_cost'])}, Vapi cost {_eur(call['provider_cost'])} "
            f"({call['provider_cost_usd']} USD), margin {_eur(call['margin'])}"
        )
        say(f"  summary: {call['summary']}")
        say("Appointment")
        say(
            f"  {appointment['customer_name']} ({appointment['customer_phone']}), "
            f"{appointment['starts_at']}, {appointment['status']} by {appointment['source']}"
        )
        say("Message")
        say(f"  SMS to {message['to']}: “{message['body']}”")
        say(
            f"  {message['status']}, {message['num_segments']} segment(s) {message['encoding']}, "
            f"billed {_eur(message['billed_cost'])}, provider cost "
            f"{_eur(message['provider_cost'])} ({message['provider_cost_usd']} USD at "
            f"{message['exchange_rate_usd_eur']} €/USD), margin {_eur(message['margin'])}"
        )
        say("KPIs (GET /api/metrics/messages and /api/metrics/calls, last 30 days)")
        say(
            f"  messages: {m['total']} in all, {m['delivered']} delivered "
            f"({m['delivery_rate']} %), revenue {_eur(m['total_revenue'])}, cost "
            f"{_eur(m['total_cost'])}, margin {_eur(m['total_margin'])} "
            f"({m['margin_percentage']} %)"
        )
        say(
            f"  calls: {c['calls']} call(s), {c['bridged']} bridged, "
            f"{c['appointments_booked']} appointment(s) booked "
            f"(conversion {c['booking_conversion']} %), revenue {_eur(c['total_revenue'])}, "
            f"cost {_eur(c['total_cost'])}, margin {_eur(c['total_margin'])}"
        )


async def _play(stack: _Stack, out: TextIO) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=15) as http:
        story = _Story(stack, http, out)
        assistant = await story.tenant()
        call = await story.call(assistant)
        await story.conversation(call)
        message = await story.confirmation()
        await story.report(message)


def run_demo(out: TextIO, callback_delay: float = 0.3) -> None:
    """Play the story, printing it to `out`; raises DemoError when a step goes wrong."""
    logger = logging.getLogger("gateway")
    level = logger.level
    logger.setLevel(logging.WARNING)  # the story is the output, not the request log
    try:
        with _running_stack(callback_delay) as stack:
            print(
                "Channel Gateway demo: Twilio and Vapi emulators and a gateway on 127.0.0.1,\n"
                f"scratch database in {stack.scratch} (removed at the end).\n",
                file=out,
                flush=True,
            )
            asyncio.run(_play(stack, out))
    finally:
        logger.setLevel(level)
    print(
        "\nDone: the emulators and the gateway are stopped, the scratch folder removed.",
        file=out,
        flush=True,
    )
