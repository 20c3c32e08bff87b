"""Channel configuration: validate, merge, encrypt and store each channel's settings.

Writes by the tenant (`POST` replace, `PUT` JSON merge patch) touch only tenant fields;
operator fields go through the operator endpoint. Secret fields are encrypted as one JSON
object under the primary key, bound to (tenant id, channel type), and never leave here in
clear except to the adapters that need them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, SecretStr, ValidationError

from gateway.channel_models import (
    SPECS,
    ChannelSpec,
    EmailConfig,
    SmsOperatorConfig,
    missing_fields,
)
from gateway.config import Settings
from gateway.crypto import DecryptionError, Keyring, aad_for
from gateway.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from gateway.net_guard import HostGuard, HostRefused
from gateway.services import config_cache
from gateway.services.numbers import operator_numbers
from gateway.store import channels as store
from gateway.store.tenant_scope import ScopedConnection, TenantDB
from gateway.validation import field_errors, validate_model

# The operator's settings a channel's readiness depends on (`missing_fields`), as text.
_GATEWAY_NAMES = (
    "VAPI_API_KEY",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_PHONE_NUMBER",
    "TELNYX_API_KEY",
    "TELNYX_PHONE_NUMBER",
    "SMS_PROVIDERS",
)


def spec_for(channel: str) -> ChannelSpec:
    spec = SPECS.get(channel)
    if spec is None:
        raise NotFound(
            f"Unknown channel {channel!r}; expected one of phone, sms, email, whatsapp",
            code="unknown_channel",
        )
    return spec


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge recursively, null removes, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def blank_as_null(patch: Any) -> Any:
    """In a merge patch a blank field (`""`, as a settings form posts an emptied input)
    clears the field, like null."""
    if isinstance(patch, dict):
        return {k: None if v == "" else blank_as_null(v) for k, v in patch.items()}
    return patch


def mask(secret: str) -> dict[str, Any]:
    return {"set": True, "last4": secret[-4:] if len(secret) >= 12 else None}


@dataclass
class ChannelState:
    spec: ChannelSpec
    row: store.ChannelRow
    secrets: dict[str, str]

    @property
    def tenant_settings(self) -> dict[str, Any]:
        ops = set(self.spec.operator_fields)
        return {k: v for k, v in self.row.settings.items() if k not in ops}

    @property
    def operator_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.row.settings.items() if k in self.spec.operator_fields}

    def config(self) -> BaseModel:
        """The tenant settings with their secrets, as the adapters use them. Settings stored
        by an older version that today's rules refuse are a 409 naming the fields (the
        tenant saves them again), never a 500."""
        try:
            model: BaseModel = self.spec.tenant_model.model_validate(
                {**self.tenant_settings, **self.secrets}
            )
        except ValidationError as exc:
            fields = field_errors(exc)
            raise Conflict(
                f"The stored {self.spec.channel} settings are no longer valid: "
                + ", ".join(f["field"] for f in fields)
                + "; save them again",
                code="channel_settings_invalid",
                details={"fields": fields},
            ) from None
        return model


class SmsProviders(Protocol):
    """What the channel settings need to know of the SMS providers (failover's routing)."""

    def names(self) -> tuple[str, ...]: ...

    def ready(self, operator: Mapping[str, Any]) -> bool: ...


class ChannelConfigService:
    def __init__(self, settings: Settings, *, sms: SmsProviders | None = None) -> None:
        self.settings = settings
        self.keyring: Keyring = settings.keyring
        self.smtp_hosts = HostGuard.from_settings(settings)
        # which SMS providers exist and whether one of a tenant's can send
        self.sms = sms

    def _gateway_values(self) -> dict[str, str | None]:
        return self.settings.typed.text_of(_GATEWAY_NAMES)

    def missing(self, state: ChannelState) -> list[str]:
        return self._missing(state.spec.channel, state.row.settings, state.secrets)

    def _missing(
        self, channel: str, settings: dict[str, Any], secrets: dict[str, str]
    ) -> list[str]:
        if channel == "sms" and self.sms is not None and self.sms.ready(settings):
            return []  # one of the tenant's providers can send (failover: any of them)
        return missing_fields(channel, settings, secrets, self._gateway_values())

    async def load(
        self, tdb: TenantDB, channel: str, *, unreadable_ok: bool = False
    ) -> ChannelState:
        """The channel's settings and secrets; secrets that cannot be decrypted are a 503,
        or, with `unreadable_ok` (a write that replaces them all), treated as absent."""
        spec = spec_for(channel)
        row = await store.get_channel(tdb, channel)
        try:
            return ChannelState(spec, row, self._decrypt(row))
        except ServiceUnavailable:
            if not unreadable_ok:
                raise
            return ChannelState(spec, row, {})

    def _decrypt(self, row: store.ChannelRow) -> dict[str, str]:
        if not row.config_encrypted:
            return {}
        try:
            plain = self.keyring.decrypt(
                row.config_encrypted,
                aad_for(row.tenant_id, row.channel_type, row.secrets_version),
            )
        except DecryptionError:
            raise ServiceUnavailable(
                "The stored credentials of this channel cannot be decrypted with the "
                "configured keys",
                code="credentials_unreadable",
            ) from None
        secrets: dict[str, str] = json.loads(plain)
        return secrets

    @staticmethod
    def _with_defaults(state: ChannelState) -> dict[str, Any]:
        spec = state.spec
        try:
            model = spec.tenant_model.model_validate(state.tenant_settings)
        except ValueError:  # stored by an older version with other rules: show as stored
            return state.tenant_settings
        return model.model_dump(mode="json", exclude=set(spec.secret_fields))

    def view(self, state: ChannelState) -> dict[str, Any]:
        spec = state.spec
        settings = self._with_defaults(state)
        operator = spec.operator_model.model_validate(state.operator_settings).model_dump(
            mode="json"
        )
        missing = self.missing(state)
        return {
            "channel": spec.channel,
            "enabled": state.row.enabled,
            "configured": not missing,
            "missing": missing,
            "settings": settings,
            "operator_settings": operator,
            "secrets": {
                name: mask(state.secrets[name]) if name in state.secrets else {"set": False}
                for name in spec.secret_fields
            },
            "last_error": state.row.last_error,
            "last_error_at": state.row.last_error_at,
            "updated_at": state.row.updated_at,
        }

    def summary(self, state: ChannelState) -> dict[str, Any]:
        missing = self.missing(state)
        return {
            "channel": state.spec.channel,
            "enabled": state.row.enabled,
            "configured": not missing,
            "missing": missing,
            "last_error": state.row.last_error,
            "updated_at": state.row.updated_at,
        }

    async def list(self, tdb: TenantDB) -> list[dict[str, Any]]:
        rows = await store.list_channels(tdb)
        return [self._summary_of(r) for r in rows]

    def _summary_of(self, row: store.ChannelRow) -> dict[str, Any]:
        """One channel of the list; unreadable credentials spoil that channel only."""
        try:
            secrets = self._decrypt(row)
        except ServiceUnavailable as exc:
            summary = self.summary(ChannelState(spec_for(row.channel_type), row, {}))
            return {**summary, "configured": False, "error": exc.code, "last_error": exc.message}
        return self.summary(ChannelState(spec_for(row.channel_type), row, secrets))

    # -- writes ---------------------------------------------------------------------------

    async def replace(self, tdb: TenantDB, channel: str, data: Any) -> dict[str, Any]:
        # replacing every secret: ones that can no longer be read are simply overwritten
        state = await self.load(tdb, channel, unreadable_ok=True)
        return await self._save_tenant(tdb, state, data)

    async def update(self, tdb: TenantDB, channel: str, patch: Any) -> dict[str, Any]:
        state = await self.load(tdb, channel)
        if not isinstance(patch, dict):
            raise ValidationFailed.one("body", "must be a JSON object")
        self._reject_operator_fields(state.spec, patch)
        # merge onto the settings as shown (defaults filled in), so a patch of one weekday
        # keeps the other days' default hours
        current = {**self._with_defaults(state), **state.secrets}
        return await self._save_tenant(tdb, state, merge_patch(current, blank_as_null(patch)))

    async def operator_update(self, tdb: TenantDB, channel: str, patch: Any) -> dict[str, Any]:
        state = await self.load(tdb, channel)
        spec = state.spec
        if not isinstance(patch, dict):
            raise ValidationFailed.one("body", "must be a JSON object")
        if not spec.operator_fields:
            raise ValidationFailed.one(
                "body", f"the {channel} channel has no operator-only settings"
            )
        merged = merge_patch(state.operator_settings, patch)
        model: BaseModel = validate_model(spec.operator_model, merged)
        if isinstance(model, SmsOperatorConfig) and model.providers and self.sms is not None:
            known = self.sms.names()
            unknown = [name for name in model.providers if name not in known]
            if unknown:
                raise ValidationFailed.one(
                    "providers",
                    f"unknown SMS provider {', '.join(unknown)}; known: {', '.join(known)}",
                )
        settings = {**state.tenant_settings, **model.model_dump(mode="json")}
        return await self._store(tdb, state, settings, state.secrets)

    async def toggle(self, tdb: TenantDB, channel: str, enabled: bool) -> dict[str, Any]:
        state = await self.load(tdb, channel)
        if enabled:
            missing = self.missing(state)
            if missing:
                raise Conflict(
                    f"The {channel} channel cannot be enabled until these are set: "
                    + ", ".join(missing),
                    code="channel_not_configured",
                    details={"missing": missing},
                )

        def write(conn: ScopedConnection) -> None:
            store.set_enabled(conn, channel, enabled)

        await tdb.write_fn(write)
        await config_cache.changed(tdb.db)  # sends see it at once
        return self.view(await self.load(tdb, channel))

    async def record_error(self, tdb: TenantDB, channel: str, error: str | None) -> None:
        await tdb.write_fn(lambda conn: store.set_last_error(conn, channel, error))

    def _reject_operator_fields(self, spec: ChannelSpec, data: dict[str, Any]) -> None:
        fields = [
            {"field": name, "message": "can only be set by the operator"}
            for name in data
            if name in spec.operator_fields
        ]
        if fields:
            raise ValidationFailed(fields)

    async def _save_tenant(self, tdb: TenantDB, state: ChannelState, data: Any) -> dict[str, Any]:
        spec = state.spec
        if not isinstance(data, dict):
            raise ValidationFailed.one("body", "must be a JSON object")
        self._reject_operator_fields(spec, data)
        model: BaseModel = validate_model(spec.tenant_model, data)
        if isinstance(model, EmailConfig) and model.host:
            try:
                await self.smtp_hosts.check_saved(model.host, model.effective_port)
            except HostRefused as exc:
                raise ValidationFailed.one(exc.field, exc.reason) from None
        secrets: dict[str, str] = {}
        for name in spec.secret_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr):
                secrets[name] = value.get_secret_value()
        public = model.model_dump(mode="json", exclude=set(spec.secret_fields))
        settings = {**public, **state.operator_settings}
        return await self._store(tdb, state, settings, secrets)

    async def _store(
        self,
        tdb: TenantDB,
        state: ChannelState,
        settings: dict[str, Any],
        secrets: dict[str, str],
    ) -> dict[str, Any]:
        channel = state.spec.channel
        if state.row.enabled:
            missing = self._missing(channel, settings, secrets)
            if missing:
                raise Conflict(
                    f"The {channel} channel is enabled and would lose required settings: "
                    + ", ".join(missing)
                    + "; disable it first",
                    code="channel_enabled_incomplete",
                    details={"missing": missing},
                )
        envelope: str | None = None
        key_id: str | None = None
        version = (state.row.secrets_version, state.row.secrets_version + 1)
        if secrets:
            envelope = self.keyring.encrypt(
                json.dumps(secrets, sort_keys=True).encode(),
                aad_for(tdb.tenant_id, channel, version[1]),
            )
            key_id = self.keyring.primary_id

        reserved = operator_numbers(self.settings)

        def write(conn: ScopedConnection) -> None:
            store.save_channel(conn, channel, settings, envelope, key_id, version)
            if channel == "phone":
                for kind in ("forwarding", "dedicated"):
                    numbers = settings.get(f"{kind}_numbers", [])
                    store.replace_numbers(conn, kind, numbers, reserved)
            elif channel == "sms" and str(settings.get("sender") or "").startswith("+"):
                store.check_sender(conn, settings["sender"])

        try:
            await tdb.write_fn(write)
        except store.ConfigChanged:
            raise Conflict(
                f"The {channel} channel was changed by another request meanwhile; read it "
                "again and retry",
                code="config_changed",
            ) from None
        except store.NumberTaken as exc:
            whose = {
                "operator_number": "is one of the operator's numbers (the shared line)",
                "operator_sender": "is an SMS sender number of the operator",
            }.get(exc.reason, "is already registered to a tenant")
            raise Conflict(
                f"The number {exc.number} {whose}",
                code="number_taken",
                details={"number": exc.number, "reason": exc.reason},
            ) from None
        await config_cache.changed(tdb.db)  # sends see it at once
        return self.view(await self.load(tdb, channel))
