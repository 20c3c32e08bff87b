"""Inbound calls: find the tenant a call belongs to, then bridge it to the tenant's Vapi
assistant, answering Twilio with TwiML every time.

Twilio gives a voice webhook 15 s in all, so the Vapi bridge runs under its own budget
(`VOICE_BRIDGE_TIMEOUT_SECONDS`); when Vapi fails or is slow the caller is put through to
the tenant's fallback number, else hears an apology. Every call is logged once per CallSid
with the rule that found its tenant and what the caller got.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from twilio.twiml.voice_response import VoiceResponse

from gateway.channel_models import PhoneConfig
from gateway.channels.vapi import VapiClient, VapiError, bridge_twiml
from gateway.config import Settings
from gateway.db import Database, TenantDB
from gateway.errors import ApiError, ConfigError
from gateway.ids import now_iso
from gateway.message_states import CALL_FINAL, CALL_RANK
from gateway.services.channel_config import ChannelConfigService, ChannelState
from gateway.services.numbers import operator_numbers
from gateway.store import calls as call_store
from gateway.store import tenants as tenant_store
from gateway.validation import normalize_e164, region_of

log = logging.getLogger("gateway.voice")

Rule = Literal["forwarded_from", "dedicated_number", "sip_header", "default", "none"]
Outcome = Literal[
    "bridged", "fallback_dial", "fallback_apology", "unknown_tenant", "channel_disabled"
]

DEFAULT_BRIDGE_TIMEOUT = 5.0
# Twilio hangs up on a webhook after 15 s; what the bridge may use must leave room for the
# database work around it and the way back.
MAX_BRIDGE_TIMEOUT = 12.0
SIP_TENANT_HEADER = "sipheader_x-tenant"
CALL_STATUS_PATH = "/webhooks/twilio/call-status"
# how much longer than the bridge a retried CallSid waits for the first answer (all within
# Twilio's 15 s), and how often another instance's answer is looked for meanwhile
RETRY_GRACE = 1.5
RETRY_POLL_SECONDS = 0.05
LANGUAGE = "fr-FR"

UNKNOWN_TENANT_TEXT = (
    "Bonjour. Nous ne parvenons pas à acheminer votre appel vers votre correspondant. "
    "Merci de vérifier le numéro composé. Au revoir."
)
DISABLED_TEXT = (
    "Bonjour. Ce service n'est pas disponible pour le moment. "
    "Merci de rappeler un peu plus tard. Au revoir."
)
APOLOGY_TEXT = (
    "Bonjour. Notre assistant ne peut pas prendre votre appel pour le moment. "
    "Merci de rappeler un peu plus tard. Veuillez nous excuser. Au revoir."
)
TRANSFER_TEXT = "Bonjour. Un instant, nous transférons votre appel."


@dataclass(frozen=True)
class Resolution:
    tenant_id: str | None
    rule: Rule


@dataclass
class _Answer:
    twiml: str
    outcome: Outcome
    fields: dict[str, Any] = field(default_factory=dict)


def say_and_hang_up(text: str) -> str:
    response = VoiceResponse()
    response.say(text, language=LANGUAGE)
    response.hangup()
    return str(response)


def dial(number: str, action: str | None = None) -> str:
    """Put the caller through to `number`; when that call ends Twilio asks `action` what to
    do next (the gateway records the end there and hangs up)."""
    response = VoiceResponse()
    response.say(TRANSFER_TEXT, language=LANGUAGE)
    if action:
        response.dial(number, action=action, method="POST")
    else:
        response.dial(number)
    return str(response)


def hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def bridge_timeout(settings: Settings) -> float:
    raw = settings.get("VOICE_BRIDGE_TIMEOUT_SECONDS")
    if raw is None:
        return DEFAULT_BRIDGE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"VOICE_BRIDGE_TIMEOUT_SECONDS must be a number of seconds, got {raw!r}"
        ) from None
    if not math.isfinite(value) or not 0 < value <= MAX_BRIDGE_TIMEOUT:
        raise ConfigError(
            f"VOICE_BRIDGE_TIMEOUT_SECONDS must be above 0 and at most {MAX_BRIDGE_TIMEOUT:g} "
            "(Twilio waits 15 s for the whole answer)"
        )
    return value


def _e164(value: str | None, region: str | None = None) -> str | None:
    if not value:
        return None
    try:
        return normalize_e164(value, region)
    except ValueError:
        return None


def _as_logged(value: str | None) -> str | None:
    # E.164 when it parses; else as Twilio sent it ("anonymous", a SIP URI) for the record
    return _e164(value) or value or None


def _sip_tenant(params: Mapping[str, str]) -> str | None:
    # Twilio passes SIP headers as sent, so the header's case is the sender's.
    for name, value in params.items():
        if name.lower() == SIP_TENANT_HEADER and value.strip():
            return value.strip()
    return None


class VoiceService:
    def __init__(self, db: Database, settings: Settings, channels: ChannelConfigService) -> None:
        self.db = db
        self.settings = settings
        self.channels = channels
        self.bridge_timeout = bridge_timeout(settings)
        self.operator_numbers = operator_numbers(settings)
        self._vapi: VapiClient | None = None
        # CallSid -> the answer being made for it (Twilio's retries of it wait for that one)
        self._answering: dict[str, asyncio.Future[str]] = {}

    def vapi(self) -> VapiClient | None:
        """The shared Vapi client, or None while VAPI_API_KEY is not set."""
        if self._vapi is None:
            key = self.settings.get("VAPI_API_KEY")
            if not key:
                return None
            timeout = float(self.settings.get("PROVIDER_TIMEOUT_SECONDS", "10") or 10)
            base = self.settings.get("VAPI_API_BASE") or "https://api.vapi.ai"
            self._vapi = VapiClient(base, key, timeout)
        return self._vapi

    async def aclose(self) -> None:
        if self._vapi is not None:
            await self._vapi.aclose()
            self._vapi = None

    # -- tenant resolution ----------------------------------------------------------------

    async def resolve_tenant(self, params: Mapping[str, str]) -> Resolution:
        """ForwardedFrom → a dedicated called number → the SIP X-Tenant header → the default.

        ForwardedFrom is carrier-dependent and often missing, hence the chain. The SIP header
        can only come from a SIP trunk or domain the operator set up, never from a PSTN
        caller, so it is trusted like the numbers are."""
        called = _e164(params.get("To") or params.get("Called"))
        # a carrier may pass ForwardedFrom in national form: read it where the call was made
        forwarded = _e164(params.get("ForwardedFrom"), region_of(called))
        if forwarded and forwarded not in self.operator_numbers:
            found = await tenant_store.tenant_for_number(self.db, forwarded)
            if found is not None:
                return Resolution(found[0], "forwarded_from")
        if called and called not in self.operator_numbers:
            found = await tenant_store.tenant_for_number(self.db, called)
            # only a dedicated number speaks for one tenant: the shared line serves them all
            if found is not None and found[1] == "dedicated":
                return Resolution(found[0], "dedicated_number")
        header = _sip_tenant(params)
        if header:
            tenant = await tenant_store.get_tenant(self.db, header)
            if tenant is not None:
                return Resolution(tenant.id, "sip_header")
        default = self.settings.get("DEFAULT_TENANT")
        if default:
            tenant = await tenant_store.get_tenant(self.db, default)
            if tenant is not None:
                return Resolution(tenant.id, "default")
            log.warning("DEFAULT_TENANT names no tenant", extra={"tenant": default})
        return Resolution(None, "none")

    # -- the webhook ----------------------------------------------------------------------

    async def handle_inbound_call(self, params: Mapping[str, str]) -> str:
        """The TwiML for an inbound call. Never raises: Twilio plays its own error message on
        a 500, so anything unexpected still gets a polite answer."""
        try:
            return await self._handle(params)
        except Exception:
            log.exception("inbound call could not be handled", extra=_call_extra(params))
            return say_and_hang_up(APOLOGY_TEXT)

    async def _handle(self, params: Mapping[str, str]) -> str:
        """One answer per CallSid, however Twilio's retries overlap: the first request for a
        CallSid answers, every other one (here or on another instance) gets that answer."""
        call_sid = params.get("CallSid") or None
        if call_sid is not None:
            first = self._answering.get(call_sid)
            if first is not None:
                return await self._same_answer(call_sid, asyncio.shield(first))
            answering: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._answering[call_sid] = answering
        try:
            twiml = await self._answer_call(params)
        except BaseException as exc:
            if call_sid is not None:
                answering.set_exception(exc)
                answering.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            if call_sid is not None:
                self._answering.pop(call_sid, None)
        if call_sid is not None:
            answering.set_result(twiml)
        return twiml

    async def _answer_call(self, params: Mapping[str, str]) -> str:
        resolution = await self.resolve_tenant(params)
        logged_fields = {
            "tenant_id": resolution.tenant_id,
            "call_sid": params.get("CallSid") or None,
            "from_number": _as_logged(params.get("From")),
            "to_number": _as_logged(params.get("To") or params.get("Called")),
            "forwarded_from": _as_logged(params.get("ForwardedFrom")),
            "resolved_by": resolution.rule,
        }
        logged = await self.db.write_fn(lambda conn: call_store.insert_call(conn, logged_fields))
        if not logged.created:
            # a retry of a CallSid already answered, or being answered by another instance
            return await self._same_answer(str(params.get("CallSid")), None, logged)
        answer = await self._answer(resolution, params, logged.id)
        update = {
            "tenant_id": resolution.tenant_id,
            "resolved_by": resolution.rule,
            "outcome": answer.outcome,
            "answer_twiml": answer.twiml,
            **answer.fields,
        }
        await self.db.write_fn(lambda conn: call_store.update_call(conn, logged.id, update))
        log.info(
            "inbound call answered",
            extra={**_call_extra(params), "rule": resolution.rule, "outcome": answer.outcome},
        )
        return answer.twiml

    async def _same_answer(
        self,
        call_sid: str,
        first: Awaitable[str] | None,
        logged: call_store.LoggedCall | None = None,
    ) -> str:
        """The answer the first request for this CallSid gave, waiting for it (within
        Twilio's 15 s) while it is being made; never a second Vapi call."""
        budget = self.bridge_timeout + RETRY_GRACE
        if first is not None:
            try:
                async with asyncio.timeout(budget):
                    return await first
            except Exception:
                log.warning("the first answer to a retried call failed", extra=_call_sid(call_sid))
                return say_and_hang_up(APOLOGY_TEXT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        while True:
            if logged is not None and logged.answer_twiml:
                return logged.answer_twiml
            if logged is not None and logged.outcome == "bridged" and logged.vapi_call_id:
                # answered before answers were kept: the bridged Vapi call's TwiML again
                replayed = await self._replay(logged.vapi_call_id)
                if replayed is not None:
                    return replayed
            if loop.time() >= deadline:
                log.warning("no answer to a retried call in time", extra=_call_sid(call_sid))
                return say_and_hang_up(APOLOGY_TEXT)
            await asyncio.sleep(RETRY_POLL_SECONDS)
            row = await call_store.get_call_by_sid(self.db, call_sid)
            logged = call_store.LoggedCall.from_row(row) if row is not None else None

    async def _answer(
        self, resolution: Resolution, params: Mapping[str, str], call_log_id: str
    ) -> _Answer:
        if resolution.tenant_id is None:
            return _Answer(say_and_hang_up(UNKNOWN_TENANT_TEXT), "unknown_tenant")
        tenant = await tenant_store.get_tenant(self.db, resolution.tenant_id)
        if tenant is None:
            return _Answer(say_and_hang_up(UNKNOWN_TENANT_TEXT), "unknown_tenant")
        tdb = TenantDB(self.db, tenant.id)
        state = await self.channels.load(tdb, "phone")
        assistant_id = state.operator_settings.get("vapi_assistant_id")
        phone_number_id = state.operator_settings.get("vapi_phone_number_id")
        if tenant.status != "active" or not state.row.enabled or not assistant_id:
            return _Answer(say_and_hang_up(DISABLED_TEXT), "channel_disabled")
        caller = params.get("From", "")
        metadata = {
            "tenant_id": tenant.id,
            "call_sid": params.get("CallSid", ""),
            "call_log_id": call_log_id,
        }
        fields: dict[str, Any] = {"assistant_id": assistant_id}
        try:
            call = await self._bridge(
                phone_number_id, assistant_id, _e164(caller) or caller, metadata
            )
        except Exception as exc:
            error = exc if isinstance(exc, VapiError) else None
            if error is None:
                log.exception("Vapi bridge failed unexpectedly", extra=_call_extra(params))
                error = VapiError("unknown", f"the bridge failed: {type(exc).__name__}")
            else:
                log.warning(
                    "Vapi bridge failed",
                    extra={**_call_extra(params), "kind": error.kind, "reason": error.reason},
                )
            if error.kind == "configuration":
                await self._note_error(tdb, f"Vapi: {error.reason}")
            fields["metadata"] = {"bridge_error": {"kind": error.kind, "reason": error.reason}}
            return self._fallback(state, fields)
        twiml = bridge_twiml(call)
        assert twiml is not None  # create_bypass_call refuses a call without TwiML
        if state.row.last_error and state.row.last_error.startswith("Vapi: "):
            await self._note_error(tdb, None)
        return _Answer(twiml, "bridged", {**fields, "vapi_call_id": call["id"]})

    async def _note_error(self, tdb: TenantDB, error: str | None) -> None:
        """Show (or clear) a Vapi configuration problem as the phone channel's last_error,
        where the tenant looks; failing to do so must not cost the caller the answer."""
        try:
            await self.channels.record_error(tdb, "phone", error)
        except Exception:
            log.exception("could not record the phone channel's last error")

    async def _bridge(
        self,
        phone_number_id: str | None,
        assistant_id: str,
        customer: str,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        client = self.vapi()
        if client is None:
            raise VapiError("configuration", "VAPI_API_KEY is not set")
        if not phone_number_id:
            raise VapiError("configuration", "the phone channel has no vapi_phone_number_id")
        try:
            async with asyncio.timeout(self.bridge_timeout):
                return await client.create_bypass_call(
                    phone_number_id, assistant_id, customer, metadata
                )
        except TimeoutError:
            raise VapiError(
                "unknown", f"Vapi did not answer within {self.bridge_timeout:g} s"
            ) from None

    def _fallback(self, state: ChannelState, fields: dict[str, Any]) -> _Answer:
        try:
            config = state.config()
        except ApiError:  # stored by an older version with other rules
            config = None
        number = config.fallback_number if isinstance(config, PhoneConfig) else None
        if number:
            action = f"{self.settings.public_base_url}{CALL_STATUS_PATH}"
            return _Answer(dial(number, action), "fallback_dial", fields)
        return _Answer(say_and_hang_up(APOLOGY_TEXT), "fallback_apology", fields)

    async def _replay(self, vapi_call_id: str) -> str | None:
        client = self.vapi()
        if client is None:
            return None
        try:
            async with asyncio.timeout(self.bridge_timeout):
                call = await client.get_call(vapi_call_id)
        except (TimeoutError, VapiError) as exc:
            log.warning("could not fetch the bridged Vapi call again", extra={"reason": str(exc)})
            return None
        return bridge_twiml(call)

    # -- Twilio's call status callbacks ------------------------------------------------------

    async def call_status(self, params: Mapping[str, str]) -> str:
        """Twilio reports how a call went: the number's status callback (`CallStatus`,
        `CallDuration`) or the end of a fallback `<Dial>` (`DialCallStatus`, whose answer is
        what the caller hears next: the call ends there). Applied as a conditional
        transition: an ended call stays ended."""
        call_sid = params.get("CallSid") or ""
        dialled = params.get("DialCallStatus")
        status = "completed" if dialled else params.get("CallStatus") or ""
        if call_sid and status in CALL_RANK:
            fields: dict[str, Any] = {"status": status}
            filled: dict[str, Any] = {}
            if status in CALL_FINAL:
                filled["ended_at"] = now_iso()
                duration = params.get("CallDuration") or params.get("DialCallDuration")
                if duration and duration.isdigit():
                    filled["duration_seconds"] = float(duration)
                if dialled:
                    filled["ended_reason"] = f"fallback-dial-{dialled}"

            def write(conn: sqlite3.Connection) -> None:
                if call_store.update_call_by_sid(conn, call_sid, fields):
                    call_store.fill_call_by_sid(conn, call_sid, filled)

            await self.db.write_fn(write)
        return hang_up()

    # -- lookups for Vapi's server messages ------------------------------------------------

    async def tenant_for_vapi_call(self, vapi_call_id: str) -> str | None:
        row = await call_store.get_call_by_vapi_id(self.db, vapi_call_id)
        tenant_id: str | None = row["tenant_id"] if row is not None else None
        return tenant_id

    async def tenant_for_assistant(self, assistant_id: str) -> str | None:
        """The tenant of an assistant, when exactly one tenant uses it."""
        tenants = await call_store.tenants_for_assistant(self.db, assistant_id)
        return tenants[0] if len(tenants) == 1 else None

    async def tenant_for_called_number(self, e164: str) -> tuple[str, str] | None:
        """(tenant id, assistant id) for a number dedicated to a tenant whose phone channel is
        on: what Vapi's assistant-request needs. A forwarding number is the tenant's own
        line, never a number calls arrive at, and an operator number serves every tenant:
        neither answers for one tenant."""
        number = _e164(e164)
        if number is None or number in self.operator_numbers:
            return None
        found = await tenant_store.tenant_for_number(self.db, number)
        if found is None or found[1] != "dedicated":
            return None
        tenant = await tenant_store.get_tenant(self.db, found[0])
        if tenant is None or tenant.status != "active":
            return None
        state = await self.channels.load(TenantDB(self.db, found[0]), "phone")
        assistant_id = state.operator_settings.get("vapi_assistant_id")
        if not state.row.enabled or not isinstance(assistant_id, str) or not assistant_id:
            return None
        return found[0], assistant_id

    async def update_vapi_call(
        self, tenant_id: str, vapi_call_id: str, fields: dict[str, Any]
    ) -> None:
        """Apply a Vapi report to the call the bridge recorded, or record the call when Vapi
        reports one the bridge never saw (a number imported into Vapi, say)."""

        def write(conn: sqlite3.Connection) -> None:
            if not call_store.update_call_by_vapi_id(conn, vapi_call_id, fields):
                call_store.insert_call(conn, {"tenant_id": tenant_id, "vapi_call_id": vapi_call_id})
                call_store.update_call_by_vapi_id(conn, vapi_call_id, fields)

        await self.db.write_fn(write)


def _call_extra(params: Mapping[str, str]) -> dict[str, Any]:
    # the CallSid identifies the call in Twilio's console; numbers stay out of the logs
    return {"call_sid": params.get("CallSid")}


def _call_sid(call_sid: str) -> dict[str, Any]:
    return {"call_sid": call_sid}
