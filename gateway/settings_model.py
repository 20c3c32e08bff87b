"""Every setting the gateway reads, typed once: its name, type, default, validation and a
one-line description, in the group the README documents it with (`gateway.settings_docs`
writes the README's settings tables from this model).

Values arrive as text from the sources of `gateway.settings_sources`; the types of
`gateway.settings_types` parse it, so that a bad value stops start-up with one line naming the
setting (`ConfigError`, see `config_error`). Secrets are `SecretStr`: never in a repr.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import ConfigError
from gateway.net_guard import parse_ports
from gateway.settings_sources import DEFAULT_CONFIG_FILE, Layers, read_toml, wrangler_section
from gateway.settings_types import (
    AccountSid,
    AdminKey,
    Amount,
    BridgeTimeout,
    DatabaseUrl,
    DaysOrOff,
    Ed25519Key,
    FilePath,
    Flag,
    GraphVersion,
    LogLevel,
    OnOff,
    PhoneNumber,
    PhoneNumbers,
    Ports,
    PositiveSeconds,
    ProviderNames,
    Rate,
    ReadDeadline,
    Seconds,
    Secret,
    Text,
    Url,
    UrlOrOff,
    WholeNumber,
)

Group = Literal[
    "core", "database", "pricing", "providers", "email", "limits", "dispatch", "failover", "voice"
]
GROUPS: tuple[Group, ...] = (
    "core",
    "database",
    "pricing",
    "providers",
    "email",
    "limits",
    "dispatch",
    "failover",
    "voice",
)


def setting(
    default: Any, name: str, group: Group, description: str, *, shown: str | None = None
) -> Any:
    """One field: `name` is how every source spells it; `shown` is the default as the README
    says it, when the value is computed (or generated) rather than fixed."""
    extra: dict[str, Any] = {"group": group}
    if shown is not None:
        extra["shown_default"] = shown
    return Field(default, alias=name, description=description, json_schema_extra=extra)


_LAYERS: ContextVar[Layers | None] = ContextVar("gateway_settings_layers", default=None)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # -- core
    admin_api_key: AdminKey | None = setting(
        None,
        "ADMIN_API_KEY",
        "core",
        "the operator's bearer key (at least 16 characters)",
        shown="generated in development",
    )
    encryption_key: Secret | None = setting(
        None,
        "ENCRYPTION_KEY",
        "core",
        "32 bytes, base64 or hex: the AES-256-GCM key for stored credentials",
        shown="generated in development",
    )
    encryption_keys: Secret | None = setting(
        None,
        "ENCRYPTION_KEYS",
        "core",
        "a keyring instead: `id:base64key,id2:base64key2`, primary (encrypting) key first; "
        "wins over `ENCRYPTION_KEY`",
    )
    public_base_url: Url | None = setting(
        None,
        "PUBLIC_BASE_URL",
        "core",
        "the URL providers reach the gateway at; webhook signatures are computed over it; "
        "required in production",
        shown="`http://localhost:8787`",
    )
    log_level: LogLevel = setting("INFO", "LOG_LEVEL", "core", "the least severe level logged")
    gateway_env: Text | None = setting(
        None,
        "GATEWAY_ENV",
        "core",
        "the `[env.<name>]` to run, like `--env` (which wins); read from the process "
        "environment only",
        shown="`development`",
    )
    gateway_config: Text = setting(
        DEFAULT_CONFIG_FILE,
        "GATEWAY_CONFIG",
        "core",
        "the TOML configuration file, like `--config` (which wins); read from the process "
        "environment only",
    )
    alert_webhook_url: Url | None = setting(
        None,
        "ALERT_WEBHOOK_URL",
        "core",
        "receives each new and each resolved alert as a signed JSON POST",
    )
    alert_webhook_secret: Secret | None = setting(
        None,
        "ALERT_WEBHOOK_SECRET",
        "core",
        "the HMAC-SHA256 key of the alert webhook's `X-Gateway-Signature`; required with "
        "`ALERT_WEBHOOK_URL`",
    )
    alert_webhook_max_attempts: WholeNumber = setting(
        8, "ALERT_WEBHOOK_MAX_ATTEMPTS", "core", "attempts before an alert's POST is given up"
    )
    alert_webhook_backoff_seconds: PositiveSeconds = setting(
        30.0,
        "ALERT_WEBHOOK_BACKOFF_SECONDS",
        "core",
        "wait before the first retry of an alert's POST, doubled after each failure (at most "
        "an hour)",
    )
    alert_min_messages: WholeNumber = setting(
        20,
        "ALERT_MIN_MESSAGES",
        "core",
        "messages with a final status (or a known margin) a tenant needs in the window before "
        "its failure rate (or loss share) can raise an alert",
    )
    alert_expensive_segment_eur: Amount = setting(
        Decimal("0.20"),
        "ALERT_EXPENSIVE_SEGMENT_EUR",
        "core",
        "a destination whose SMS cost more than this per segment on average over 24 h raises "
        "an alert (provider cost, EUR)",
    )

    # -- database
    database_path: FilePath | None = setting(
        None,
        "DATABASE_PATH",
        "database",
        "the SQLite file (relative paths are relative to the TOML file)",
        shown="`.state/d1/<database_name>.sqlite3`",
    )
    read_connections: WholeNumber = setting(
        4, "READ_CONNECTIONS", "database", "read connections (SQLite), or pooled (PostgreSQL)"
    )
    write_connections: WholeNumber = setting(
        4,
        "WRITE_CONNECTIONS",
        "database",
        "PostgreSQL: write transactions one instance runs at once (SQLite has one writer "
        "thread with group commit)",
    )
    retention_days: DaysOrOff = setting(
        730,
        "RETENTION_DAYS",
        "database",
        "messages' texts, their events' raw payloads and calls' transcripts, summaries and "
        "recording URLs older than this are removed by the cron schedule (addresses, money, "
        "counts, statuses and timestamps stay); `off` keeps them forever",
    )
    database_url: DatabaseUrl | None = setting(
        None,
        "DATABASE_URL",
        "database",
        "PostgreSQL instead of the SQLite file, `postgresql://user:password@host:5432/name`: "
        "wins over the D1 binding and a `[[hyperdrive]]` one",
    )

    # -- pricing
    sms_price_per_segment: Amount = setting(
        Decimal("0.07"),
        "SMS_PRICE_PER_SEGMENT",
        "pricing",
        "the default billed price per SMS segment (EUR)",
    )
    call_price_per_minute: Amount = setting(
        Decimal("0.15"),
        "CALL_PRICE_PER_MINUTE",
        "pricing",
        "the default billed price per started call minute (EUR)",
    )
    usd_eur_rate: Amount = setting(
        Decimal("0.92"),
        "USD_EUR_RATE",
        "pricing",
        "the USD→EUR rate used when no daily rate is stored (the feed unreachable for a week)",
    )
    exchange_rate_url: UrlOrOff = setting(
        "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml",
        "EXCHANGE_RATE_URL",
        "pricing",
        "the ECB euro reference rates (`eurofxref-daily.xml`), fetched once a day for USD→EUR; "
        "`off`: never fetched, `USD_EUR_RATE` (or the last stored rate) is used",
    )

    # -- providers
    twilio_account_sid: AccountSid | None = setting(
        None, "TWILIO_ACCOUNT_SID", "providers", "the operator's Twilio account (SMS and voice)"
    )
    twilio_auth_token: Secret | None = setting(
        None,
        "TWILIO_AUTH_TOKEN",
        "providers",
        "its auth token: REST calls and the signatures of Twilio's webhooks",
    )
    twilio_phone_number: PhoneNumber | None = setting(
        None,
        "TWILIO_PHONE_NUMBER",
        "providers",
        "the shared number: default SMS sender and the line tenants forward to",
    )
    operator_numbers: PhoneNumbers = setting(
        (),
        "OPERATOR_NUMBERS",
        "providers",
        "the operator's other numbers: like the shared line and the Telnyx sender, no tenant "
        "can claim them and they never route to a tenant by ownership",
    )
    twilio_api_base: Url = setting(
        "https://api.twilio.com",
        "TWILIO_API_BASE",
        "providers",
        "Twilio's REST base (the sandbox replaces it in tests)",
    )
    telnyx_api_key: Secret | None = setting(
        None, "TELNYX_API_KEY", "providers", "the operator's Telnyx API key (Bearer), for SMS"
    )
    telnyx_api_base: Url = setting(
        "https://api.telnyx.com", "TELNYX_API_BASE", "providers", "Telnyx's API base"
    )
    telnyx_public_key: Ed25519Key | None = setting(
        None,
        "TELNYX_PUBLIC_KEY",
        "providers",
        "the account's public key, which verifies Telnyx's signed webhooks",
    )
    telnyx_phone_number: PhoneNumber | None = setting(
        None,
        "TELNYX_PHONE_NUMBER",
        "providers",
        "the sender of SMS sent through Telnyx, an operator number like the shared line",
    )
    telnyx_messaging_profile_id: Text | None = setting(
        None,
        "TELNYX_MESSAGING_PROFILE_ID",
        "providers",
        "the Telnyx messaging profile SMS are sent with",
    )
    whatsapp_graph_base: Url = setting(
        "https://graph.facebook.com", "WHATSAPP_GRAPH_BASE", "providers", "Meta's Graph API base"
    )
    whatsapp_graph_version: GraphVersion = setting(
        "v21.0", "WHATSAPP_GRAPH_VERSION", "providers", "the Graph API version called"
    )
    d360_api_base: Url = setting(
        "https://waba-v2.360dialog.io", "D360_API_BASE", "providers", "360dialog's API base"
    )

    # -- email
    smtp_ca_file: FilePath | None = setting(
        None,
        "SMTP_CA_FILE",
        "email",
        "an extra CA bundle trusted for tenants' SMTP servers (the system store is always trusted)",
    )
    smtp_allow_private_hosts: Flag = setting(
        False,
        "SMTP_ALLOW_PRIVATE_HOSTS",
        "email",
        "`true` lets tenants' SMTP hosts be internal (loopback, private, link-local…) and use "
        "any port: local development and tests only",
    )
    smtp_allowed_ports: Ports = setting(
        "25,465,587,2525",
        "SMTP_ALLOWED_PORTS",
        "email",
        "the ports a tenant's SMTP server may use while private hosts are refused (`*`: any port)",
    )

    # -- limits
    max_body_bytes: WholeNumber = setting(
        1048576, "MAX_BODY_BYTES", "limits", "request bodies above this answer 413"
    )
    header_read_timeout_seconds: ReadDeadline = setting(
        10.0,
        "HEADER_READ_TIMEOUT_SECONDS",
        "limits",
        "the request line and headers must arrive within this (from the connection's start "
        "or the previous answer), else 408 and the connection closes; idle keep-alive "
        "connections close after 5 s",
    )
    body_read_timeout_seconds: ReadDeadline = setting(
        10.0,
        "BODY_READ_TIMEOUT_SECONDS",
        "limits",
        "the whole body must arrive within this after the headers, else 408 and the "
        "connection closes",
    )

    # -- dispatch
    dispatcher: OnOff = setting(
        "on",
        "DISPATCHER",
        "dispatch",
        "`off` accepts messages without sending them and runs no cron schedule (for tests)",
    )
    dispatch_concurrency: WholeNumber = setting(
        32, "DISPATCH_CONCURRENCY", "dispatch", "sends in flight at once"
    )
    dispatch_per_sender_rate: Rate = setting(
        50.0, "DISPATCH_PER_SENDER_RATE", "dispatch", "messages per second per sender"
    )
    dispatch_max_attempts: WholeNumber = setting(
        5,
        "DISPATCH_MAX_ATTEMPTS",
        "dispatch",
        "attempts before a transient failure becomes final",
    )
    dispatch_backoff_seconds: Seconds = setting(
        1.0,
        "DISPATCH_BACKOFF_SECONDS",
        "dispatch",
        "the base of the exponential backoff (full jitter) between retries",
    )
    dispatch_backoff_max_seconds: Seconds = setting(
        300.0, "DISPATCH_BACKOFF_MAX_SECONDS", "dispatch", "the cap of that backoff"
    )
    dispatch_reconcile_seconds: Seconds = setting(
        30.0,
        "DISPATCH_RECONCILE_SECONDS",
        "dispatch",
        "wait (for the status callback) before looking up a send whose answer was lost",
    )
    dispatch_reconcile_skew_seconds: Seconds = setting(
        60.0,
        "DISPATCH_RECONCILE_SKEW_SECONDS",
        "dispatch",
        "clock difference allowed between the gateway and the provider when matching a lost "
        "send to the provider's records",
    )
    dispatch_poll_seconds: PositiveSeconds = setting(
        0.5,
        "DISPATCH_POLL_SECONDS",
        "dispatch",
        "how long the dispatcher idles, when nothing wakes it, before it looks for due "
        "messages (retries, scheduled sends) again",
    )
    dispatch_lease_seconds: PositiveSeconds = setting(
        60.0,
        "DISPATCH_LEASE_SECONDS",
        "dispatch",
        "how long a claimed send stays this instance's without a renewal (renewed every "
        "quarter of it; at least three times PROVIDER_TIMEOUT_SECONDS). When it runs out "
        "(the instance died) another instance takes the send over and reconciles it",
    )
    status_poll_seconds: Seconds = setting(
        900.0,
        "STATUS_POLL_SECONDS",
        "dispatch",
        "how long a sent message may wait for its final status callback before Twilio is "
        "asked (0: never)",
    )
    price_fetch_delay_seconds: Seconds = setting(
        5.0,
        "PRICE_FETCH_DELAY_SECONDS",
        "dispatch",
        "wait after a final status before fetching Twilio's price",
    )
    provider_timeout_seconds: PositiveSeconds = setting(
        10.0, "PROVIDER_TIMEOUT_SECONDS", "dispatch", "timeout of a provider call"
    )

    # -- SMS failover
    sms_providers: ProviderNames = setting(
        ("twilio",),
        "SMS_PROVIDERS",
        "failover",
        "the SMS providers in order: the first sends; while it is failing (`SMS_FAILOVER_AFTER` "
        "times in a row, or its circuit is open) the next one does",
    )
    sms_failover_after: WholeNumber = setting(
        3,
        "SMS_FAILOVER_AFTER",
        "failover",
        "consecutive failures of a provider before the next one is tried",
    )
    sms_circuit_seconds: PositiveSeconds = setting(
        30.0,
        "SMS_CIRCUIT_SECONDS",
        "failover",
        "how long an open circuit stays open (its provider skipped) before it is tried again",
    )

    # -- voice
    vapi_api_key: Secret | None = setting(None, "VAPI_API_KEY", "voice", "Vapi's private API key")
    vapi_api_base: Url = setting("https://api.vapi.ai", "VAPI_API_BASE", "voice", "Vapi's API base")
    vapi_sip_host: Text = setting(
        "sip.vapi.ai",
        "VAPI_SIP_HOST",
        "voice",
        "the host of the tenants' Vapi SIP addresses (SIP mode): Vapi's region of "
        "`VAPI_API_BASE` (`sip.eu.vapi.ai` with `https://api.eu.vapi.ai`)",
    )
    vapi_webhook_secret: Secret | None = setting(
        None,
        "VAPI_WEBHOOK_SECRET",
        "voice",
        "the secret Vapi sends to `/api/vapi/functions`",
    )
    vapi_model: Text = setting(
        "gpt-4o", "VAPI_MODEL", "voice", "the model of provisioned assistants"
    )
    voice_bridge_timeout_seconds: BridgeTimeout = setting(
        5.0,
        "VOICE_BRIDGE_TIMEOUT_SECONDS",
        "voice",
        "how long the bridge waits for Vapi before falling back",
    )
    default_tenant: Text | None = setting(
        None,
        "DEFAULT_TENANT",
        "voice",
        "the tenant (id or slug) of calls no other rule resolves",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layers = _LAYERS.get() or _project_layers(os.environ)
        return (init_settings, *layers.sources(settings_cls))

    @classmethod
    def from_layers(
        cls, layers: Layers, env: str | None = None, config: str | None = None
    ) -> GatewaySettings:
        """The settings of `layers`, with the environment and the configuration file that were
        chosen (`--env`, `--config`) winning over every source. A bad value is a
        `ConfigError` naming the setting, and so is a name in `[vars]` that is no setting (a
        typo there would otherwise leave the default in force without a word; the environment
        and `.dev.vars` hold other programs' names too, so they are not checked)."""
        unknown = sorted(set(layers.vars) - set(_ATTRIBUTES))
        if unknown:
            raise ConfigError(_not_settings(unknown))
        resolved: dict[str, Any] = {"GATEWAY_ENV": env}
        if config is not None:
            resolved["GATEWAY_CONFIG"] = config
        token = _LAYERS.set(layers)
        try:
            return cls(**resolved)
        except ValidationError as exc:
            raise config_error(exc) from None
        finally:
            _LAYERS.reset(token)

    @classmethod
    def names(cls) -> Iterator[tuple[str, FieldInfo]]:
        """Each setting's name (as the sources spell it) and its field."""
        for field in cls.model_fields.values():
            assert field.alias is not None
            yield field.alias, field

    def value(self, name: str) -> Any:
        """The typed value of the setting called `name` (KeyError when there is none)."""
        return getattr(self, _ATTRIBUTES[name])

    def text_of(self, names: Iterable[str]) -> dict[str, str | None]:
        """These settings as text (None: not set), in the form the sources accept: a list
        comma-separated, a secret revealed (for the code that holds it, never a log line)."""
        found = {name: self.value(name) for name in names}
        return {name: None if v in (None, ()) else as_text(v) for name, v in found.items()}

    @property
    def smtp_ports(self) -> frozenset[int] | None:
        """`SMTP_ALLOWED_PORTS` as port numbers (None: any port)."""
        return parse_ports(self.smtp_allowed_ports)


_ATTRIBUTES = {
    field.alias: attribute
    for attribute, field in GatewaySettings.model_fields.items()
    if field.alias is not None
}


def default_of(name: str) -> Any:
    """The default of the setting called `name`, for code that needs it without settings
    (a keyword's default, a benchmark's server)."""
    return GatewaySettings.model_fields[_ATTRIBUTES[name]].default


def reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def as_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def config_error(exc: ValidationError) -> ConfigError:
    """The first error of a validation, in one line that starts with the setting's name."""
    error = exc.errors()[0]
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    cause = (error.get("ctx") or {}).get("error")
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    separator = "" if message.startswith(":") else " "
    return ConfigError(f"{name}{separator}{message}".replace("\n", " "))


def _not_settings(names: list[str]) -> str:
    described = []
    for name in names:
        close = difflib.get_close_matches(name, list(_ATTRIBUTES), n=1)
        described.append(f"{name} (did you mean {close[0]}?)" if close else name)
    verb = "is not a setting" if len(names) == 1 else "are not settings"
    return f"[vars] {', '.join(described)} {verb} of the gateway (README: Configuration)"


def _project_layers(environ: Mapping[str, str]) -> Layers:
    """The layers of the project in the working directory (or GATEWAY_CONFIG), for a bare
    `GatewaySettings()`; `gateway.config.load_settings` passes its own."""
    path = Path(environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_FILE)
    env = environ.get("GATEWAY_ENV") or None
    section = wrangler_section(read_toml(path), env)
    return Layers.for_project(path.resolve().parent, env, section, environ)
