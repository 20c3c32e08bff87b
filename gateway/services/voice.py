"""Inbound calls: find the tenant a call belongs to, then bridge it to the tenant's Vapi
assistant, answering Twilio with TwiML every time.

A tenant's phone channel bridges in one of two modes (`vapi_mode`, an operator setting):
bypass creates the Vapi call and answers with the TwiML Vapi returns; SIP answers with a
`<Dial>` to the tenant's Vapi SIP address, carrying the tenant, the caller and the CallSid as
`X-` headers, which Vapi's `assistant-request` brings back (gateway/services/vapi_server.py).

Twilio gives a voice webhook 15 s in all, so the Vapi bridge runs under its own budget
(`VOICE_BRIDGE_TIMEOUT_SECONDS`); when Vapi fails or is slow, or the tenant's SIP address is
missing, the caller is put through to the tenant's fallback number, else hears an apology.
Every call is logged once per CallSid with the rule that found its tenant and what the
caller got.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.channel_models import PhoneConfig
from gateway.config import Settings
from gateway.domain.calls import (
    BridgedCall,
    CallAnswer,
    CallProgress,
    DialSip,
    InboundCall,
    Say,
    Transfer,
)
from gateway.domain.errors import ProviderError
from gateway.errors import ApiError, ConfigError
from gateway.ids import now_iso
from gateway.message_states import CALL_FINAL, CALL_RANK
from gateway.providers.base import Telephony, VoiceAgent, WebhookReply
from gateway.providers.registry import Providers
from gateway.services.channel_config import ChannelConfigService, ChannelState
from gateway.services.numbers import operator_numbers
from gateway.store import calls as call_store
from gateway.store import tenants as tenant_store
from gateway.store.engine import Connection, Engine, UniqueViolation
from gateway.store.tenant_scope import ScopedConnection, TenantDB
from gateway.validation import normalize_e164, region_of

log = logging.getLogger("gateway.voice")

Rule = Literal["forwarded_from", "dedicated_number", "sip_header", "default", "none"]
Outcome = Literal[
    "bridged", "fallback_dial", "fallback_apology", "unknown_tenant", "channel_disabled"
]

SIP_TENANT_HEADER = "x-tenant"
# what a SIP bridge tells Vapi of the call (Vapi hands them back in `assistant-request`)
BRIDGE_TENANT_HEADER = "X-Tenant-Id"
BRIDGE_CALLER_HEADER = "X-Caller"
BRIDGE_CALL_SID_HEADER = "X-Call-Sid"
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


@dataclass(frozen=True)
class SipTenant:
    """The tenant of a call that reached Vapi over its SIP address, with the assistant that
    answers it (None: the tenant takes no calls now)."""

    tenant_id: str
    assistant_id: str | None


@dataclass
class _Answer:
    answer: CallAnswer
    outcome: Outcome
    fields: dict[str, Any] = field(default_factory=dict)


def say_and_hang_up(text: str) -> CallAnswer:
    return Say(text, LANGUAGE)


def dial(number: str, action: str | None = None) -> CallAnswer:
    """Put the caller through to `number`; when that call ends the provider reports to
    `action` (the gateway records the end there and hangs up)."""
    return Transfer(number, TRANSFER_TEXT, LANGUAGE, action)


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


def _sip_tenant(call: InboundCall) -> str | None:
    # SIP headers arrive as sent, so the header's case is the sender's.
    for name, value in call.sip_headers.items():
        if name.lower() == SIP_TENANT_HEADER and value.strip():
            return value.strip()
    return None


class VoiceService:
    def __init__(
        self,
        db: Engine,
        settings: Settings,
        channels: ChannelConfigService,
        providers: Providers,
        telephony: str = "twilio",
    ) -> None:
        self.db = db
        self.settings = settings
        self.channels = channels
        self.providers = providers
        self.telephony_name = telephony
        # validated with the settings: above 0, and within Twilio's 15 s
        self.bridge_timeout = settings.typed.voice_bridge_timeout_seconds
        self.default_tenant = settings.typed.default_tenant
        self.operator_numbers = operator_numbers(settings)
        # CallSid -> the answer being made for it (the provider's retries wait for that one)
        self._answering: dict[str, asyncio.Future[str]] = {}

    def vapi(self) -> VoiceAgent | None:
        """The voice assistants' platform, or None while VAPI_API_KEY is not set."""
        return self.providers.voice_agent("vapi")

    @property
    def telephony(self) -> Telephony:
        found = self.providers.telephony(self.telephony_name)
        if found is None:
            raise ConfigError(f"no telephony provider {self.telephony_name!r}")
        return found

    # -- tenant resolution ----------------------------------------------------------------

    async def resolve_tenant(self, call: InboundCall) -> Resolution:
        """ForwardedFrom → a dedicated called number → the SIP X-Tenant header → the default.

        ForwardedFrom is carrier-dependent and often missing, hence the chain. The SIP header
        can only come from a SIP trunk or domain the operator set up, never from a PSTN
        caller, so it is trusted like the numbers are."""
        called = _e164(call.to_number)
        # a carrier may pass ForwardedFrom in national form: read it where the call was made
        forwarded = _e164(call.forwarded_from, region_of(called))
        if forwarded and forwarded not in self.operator_numbers:
            found = await tenant_store.tenant_for_number(self.db, forwarded)
            if found is not None:
                return Resolution(found[0], "forwarded_from")
        if called and called not in self.operator_numbers:
            found = await tenant_store.tenant_for_number(self.db, called)
            # only a dedicated number speaks for one tenant: the shared line serves them all
            if found is not None and found[1] == "dedicated":
                return Resolution(found[0], "dedicated_number")
        header = _sip_tenant(call)
        if header:
            tenant = await tenant_store.get_tenant(self.db, header)
            if tenant is not None:
                return Resolution(tenant.id, "sip_header")
        default = self.default_tenant
        if default:
            tenant = await tenant_store.get_tenant(self.db, default)
            if tenant is not None:
                return Resolution(tenant.id, "default")
            log.warning("DEFAULT_TENANT names no tenant", extra={"tenant": default})
        return Resolution(None, "none")

    # -- the webhook ----------------------------------------------------------------------

    async def answer_call(self, call: InboundCall) -> WebhookReply:
        """The telephony provider's answer to a call coming in."""
        document = await self.handle_inbound_call(call)
        return WebhookReply(200, document, self.telephony.media_type)

    async def handle_inbound_call(self, call: InboundCall) -> str:
        """The answer to an inbound call, rendered by the telephony provider. Never raises:
        Twilio plays its own error message on a 500, so anything unexpected still gets a
        polite answer."""
        try:
            return await self._handle(call)
        except Exception:
            log.exception("inbound call could not be handled", extra=_call_sid(call.call_sid))
            return self._render(say_and_hang_up(APOLOGY_TEXT))

    def _render(self, answer: CallAnswer) -> str:
        return self.telephony.render(answer)

    async def _handle(self, call: InboundCall) -> str:
        """One answer per CallSid, however the provider's retries overlap: the first request
        for a CallSid answers, every other one (here or on another instance) gets that
        answer."""
        call_sid = call.call_sid
        if call_sid is not None:
            first = self._answering.get(call_sid)
            if first is not None:
                return await self._same_answer(call_sid, asyncio.shield(first))
            answering: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._answering[call_sid] = answering
        try:
            document = await self._answer_call(call)
        except BaseException as exc:
            if call_sid is not None:
                answering.set_exception(exc)
                answering.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            if call_sid is not None:
                self._answering.pop(call_sid, None)
        if call_sid is not None:
            answering.set_result(document)
        return document

    async def _answer_call(self, call: InboundCall) -> str:
        resolution = await self.resolve_tenant(call)
        logged_fields = {
            "tenant_id": resolution.tenant_id,
            "call_sid": call.call_sid,
            "from_number": _as_logged(call.from_number),
            "to_number": _as_logged(call.to_number),
            "forwarded_from": _as_logged(call.forwarded_from),
            "resolved_by": resolution.rule,
        }
        logged = await self.db.write_fn(lambda conn: call_store.insert_call(conn, logged_fields))
        if not logged.created:
            # a retry of a CallSid already answered, or being answered by another instance
            return await self._same_answer(str(call.call_sid), None, logged)
        answer = await self._answer(resolution, call, logged.id)
        document = self._render(answer.answer)
        update = {
            "tenant_id": resolution.tenant_id,
            "resolved_by": resolution.rule,
            "outcome": answer.outcome,
            "answer_twiml": document,
            **answer.fields,
        }
        await self.db.write_fn(lambda conn: call_store.update_call(conn, logged.id, update))
        log.info(
            "inbound call answered",
            extra={
                **_call_sid(call.call_sid),
                "rule": resolution.rule,
                "outcome": answer.outcome,
            },
        )
        return document

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
                return self._render(say_and_hang_up(APOLOGY_TEXT))
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
                return self._render(say_and_hang_up(APOLOGY_TEXT))
            await asyncio.sleep(RETRY_POLL_SECONDS)
            row = await call_store.get_call_by_sid(self.db, call_sid)
            logged = call_store.LoggedCall.from_row(row) if row is not None else None

    async def _answer(self, resolution: Resolution, call: InboundCall, call_log_id: str) -> _Answer:
        if resolution.tenant_id is None:
            return _Answer(say_and_hang_up(UNKNOWN_TENANT_TEXT), "unknown_tenant")
        tenant = await tenant_store.get_tenant(self.db, resolution.tenant_id)
        if tenant is None:
            return _Answer(say_and_hang_up(UNKNOWN_TENANT_TEXT), "unknown_tenant")
        tdb = TenantDB(self.db, tenant.id)
        state = await self.channels.load(tdb, "phone")
        operator = state.operator_settings
        assistant_id = operator.get("vapi_assistant_id")
        if tenant.status != "active" or not state.row.enabled or not assistant_id:
            return _Answer(say_and_hang_up(DISABLED_TEXT), "channel_disabled")
        caller = call.from_number or ""
        caller = _e164(caller) or caller
        mode = "sip" if operator.get("vapi_mode") == "sip" else "bypass"
        fields: dict[str, Any] = {"assistant_id": assistant_id}
        try:
            if mode == "sip":
                answer: CallAnswer = self._sip_bridge(
                    operator.get("vapi_sip_uri"), tenant.id, caller, call
                )
                try:
                    self._render(answer)
                except ValueError as exc:  # an address the telephony provider cannot dial
                    raise ProviderError("configuration", str(exc)) from None
            else:
                metadata = {
                    "tenant_id": tenant.id,
                    "call_sid": call.call_sid or "",
                    "call_log_id": call_log_id,
                }
                bridged = await self._bridge(
                    operator.get("vapi_phone_number_id"), assistant_id, caller, metadata
                )
                answer, fields["vapi_call_id"] = bridged.answer, bridged.call_id
        except Exception as exc:
            fields["metadata"] = {"vapi_mode": mode}
            return await self._bridge_failed(exc, tdb, state, fields, call.call_sid)
        if state.row.last_error and state.row.last_error.startswith("Vapi: "):
            await self._note_error(tdb, None)
        return _Answer(answer, "bridged", {**fields, "metadata": {"vapi_mode": mode}})

    async def _bridge_failed(
        self,
        exc: Exception,
        tdb: TenantDB,
        state: ChannelState,
        fields: dict[str, Any],
        call_sid: str | None,
    ) -> _Answer:
        """The fallback answer, with why the bridge failed in the call's metadata and, for a
        configuration problem, on the phone channel where the tenant looks."""
        error = exc if isinstance(exc, ProviderError) else None
        if error is None:
            log.exception("Vapi bridge failed unexpectedly", extra=_call_sid(call_sid))
            error = ProviderError("unknown", f"the bridge failed: {type(exc).__name__}")
        else:
            log.warning(
                "Vapi bridge failed",
                extra={**_call_sid(call_sid), "kind": error.kind, "reason": error.reason},
            )
        if error.kind == "configuration":
            await self._note_error(tdb, f"Vapi: {error.reason}")
        fields["metadata"] = {
            **fields.get("metadata", {}),
            "bridge_error": {"kind": error.kind, "reason": error.reason},
        }
        return self._fallback(state, fields)

    @staticmethod
    def _sip_bridge(
        sip_uri: str | None, tenant_id: str, caller: str, call: InboundCall
    ) -> CallAnswer:
        """The `<Dial>` to the tenant's Vapi SIP address: no request to Vapi is made here,
        Vapi asks for the assistant when the INVITE arrives."""
        if not sip_uri:
            raise ProviderError(
                "configuration",
                "the phone channel is in SIP mode but has no vapi_sip_uri: provision it "
                "(POST /admin/tenants/{id}/assistant)",
            )
        headers = {BRIDGE_TENANT_HEADER: tenant_id}
        if caller:
            headers[BRIDGE_CALLER_HEADER] = caller
        if call.call_sid:
            headers[BRIDGE_CALL_SID_HEADER] = call.call_sid
        return DialSip(sip_uri, headers)

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
    ) -> BridgedCall:
        client = self.vapi()
        if client is None:
            raise ProviderError("configuration", "VAPI_API_KEY is not set")
        if not phone_number_id:
            raise ProviderError("configuration", "the phone channel has no vapi_phone_number_id")
        try:
            async with asyncio.timeout(self.bridge_timeout):
                return await client.create_bypass_call(
                    phone_number_id, assistant_id, customer, metadata
                )
        except TimeoutError:
            raise ProviderError(
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
                bridged = await client.bridged_call(vapi_call_id)
        except (TimeoutError, ProviderError) as exc:
            log.warning("could not fetch the bridged Vapi call again", extra={"reason": str(exc)})
            return None
        return self._render(bridged.answer) if bridged is not None else None

    # -- Twilio's call status callbacks ------------------------------------------------------

    async def call_progress(self, progress: CallProgress) -> None:
        """How a call went (the number's status callback, or the end of a fallback
        transfer, after which the call ends), applied as a conditional transition: an ended
        call stays ended."""
        if progress.status not in CALL_RANK:
            return
        fields: dict[str, Any] = {"status": progress.status}
        filled: dict[str, Any] = {}
        if progress.status in CALL_FINAL:
            filled["ended_at"] = now_iso()
            if progress.duration_seconds is not None:
                filled["duration_seconds"] = progress.duration_seconds
            if progress.dial_status:
                filled["ended_reason"] = f"fallback-dial-{progress.dial_status}"

        def write(conn: Connection) -> None:
            if call_store.update_call_by_sid(conn, progress.call_sid, fields):
                call_store.fill_call_by_sid(conn, progress.call_sid, filled)

        await self.db.write_fn(write)

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

    async def tenant_for_sip_call(
        self, claimed: str, number_id: str | None, sip_uri: str | None
    ) -> SipTenant | None:
        """The tenant a call to a Vapi SIP address claims (its X-Tenant-Id), only when the
        call arrived on the SIP address provisioned for that very tenant: a header alone is
        never believed, since anyone who learns an address can send any header to it."""
        tenant = await tenant_store.get_tenant(self.db, claimed)
        if tenant is None or tenant.id != claimed:
            return None
        state = await self.channels.load(TenantDB(self.db, tenant.id), "phone")
        operator = state.operator_settings
        own_id, own_uri = operator.get("vapi_sip_phone_number_id"), operator.get("vapi_sip_uri")
        same_number = bool(number_id) and number_id == own_id
        # Vapi compares SIP addresses case-insensitively
        same_uri = bool(sip_uri and own_uri) and str(sip_uri).lower() == str(own_uri).lower()
        if not (same_number or same_uri):
            return None
        assistant_id = operator.get("vapi_assistant_id")
        takes_calls = tenant.status == "active" and state.row.enabled
        if not takes_calls or not isinstance(assistant_id, str) or not assistant_id:
            return SipTenant(tenant.id, None)
        return SipTenant(tenant.id, assistant_id)

    async def link_vapi_call(self, tenant_id: str, call_sid: str, vapi_call_id: str) -> None:
        """Record the Vapi call a SIP bridge led to on the tenant's logged call (by its
        CallSid), so the server messages that follow find the call, its tenant and caller."""
        row = await call_store.get_call_by_sid(self.db, call_sid)
        if row is None or row["tenant_id"] != tenant_id or row["vapi_call_id"]:
            return
        if await call_store.get_call_by_vapi_id(self.db, vapi_call_id) is not None:
            return
        fields = {"vapi_call_id": vapi_call_id}

        def write(conn: ScopedConnection) -> None:
            call_store.update_call(conn, row["id"], fields)

        try:
            await TenantDB(self.db, tenant_id).write_fn(write)
        except UniqueViolation:  # linked meanwhile by a retry of the same request
            log.info("Vapi call already linked", extra=_call_sid(call_sid))

    async def update_vapi_call(
        self, tenant_id: str, vapi_call_id: str, fields: dict[str, Any]
    ) -> None:
        """Apply a Vapi report to the call the bridge recorded, or record the call when Vapi
        reports one the bridge never saw (a number imported into Vapi, say): once, even when
        two reports of it reach two instances at the same time."""

        def write(conn: Connection) -> None:
            if not call_store.update_call_by_vapi_id(conn, vapi_call_id, fields):
                call_store.insert_reported_call(conn, tenant_id, vapi_call_id)
                call_store.update_call_by_vapi_id(conn, vapi_call_id, fields)

        await self.db.write_fn(write)


def _call_sid(call_sid: str | None) -> dict[str, Any]:
    # the CallSid identifies the call in the provider's console; numbers stay out of the logs
    return {"call_sid": call_sid}
