"""Each channel's settings: what the tenant edits, what only the operator edits, which fields
are secret (encrypted at rest, never returned), and what must be set before enabling."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, SecretStr, model_validator

from gateway.validation import (
    E164,
    BodyText,
    EmailAddress,
    HeaderText,
    Hostname,
    RequestModel,
    TemplateName,
    one_line,
)

ChannelType = Literal["phone", "sms", "email", "whatsapp"]
CHANNEL_TYPES: tuple[ChannelType, ...] = ("phone", "sms", "email", "whatsapp")
MessageType = Literal["transactional", "marketing", "notification", "appointment_reminder"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _one_line_secret(value: SecretStr) -> SecretStr:
    # secrets end up in headers (Bearer tokens, 360dialog's key) and SMTP AUTH
    one_line(value.get_secret_value())
    return value


Secret = Annotated[
    SecretStr, Field(min_length=1, max_length=4096), AfterValidator(_one_line_secret)
]
Price = Annotated[float, Field(ge=0, le=100), AfterValidator(lambda v: round(v, 4))]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone such as Europe/Paris") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_timezone), Field(examples=["Europe/Paris"])]


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("contains the same number twice")
    return values


NumberList = Annotated[list[E164], AfterValidator(_unique), Field(max_length=50)]


class _Model(RequestModel):
    pass


class TimeRange(_Model):
    open: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["09:00"])
    close: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$", examples=["12:00"])

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.close <= self.open:
            raise ValueError("close must be later than open")
        return self


def _default_hours() -> dict[Weekday, list[TimeRange]]:
    day = [TimeRange(open="09:00", close="12:00"), TimeRange(open="14:00", close="18:00")]
    return {d: list(day) for d in ("mon", "tue", "wed", "thu", "fri")}


class BookingSettings(_Model):
    timezone: TimeZoneName | None = Field(None, description="Defaults to the tenant's timezone")
    opening_hours: dict[Weekday, list[TimeRange]] = Field(default_factory=_default_hours)
    slot_minutes: int = Field(30, ge=5, le=480)
    buffer_minutes: int = Field(0, ge=0, le=240)
    min_notice_minutes: int = Field(60, ge=0, le=43200)
    capacity: int = Field(1, ge=1, le=100)
    horizon_days: int = Field(60, ge=1, le=365)


class PhoneConfig(_Model):
    forwarding_numbers: NumberList = Field(
        default_factory=list, description="Business numbers that forward to the shared line"
    )
    fallback_number: E164 | None = None
    greeting: Annotated[BodyText, Field(max_length=500)] | None = None
    booking: BookingSettings = Field(default_factory=BookingSettings)


VapiMode = Literal["bypass", "sip"]
VapiRef = Annotated[str, Field(min_length=1, max_length=100)]
# `sip:<user>@<host>`: a user part of SIP's unreserved characters, no parameters or headers
SipUri = Annotated[
    str,
    Field(
        pattern=r"^sip:[A-Za-z0-9._~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
        max_length=200,
        examples=["sip:4f6c0e2a9b7d4c1e8a5f3b2d6c9e0a17@sip.vapi.ai"],
    ),
]


class PhoneOperatorConfig(_Model):
    vapi_mode: VapiMode = Field(
        "bypass",
        description="How a call reaches the tenant's assistant: `bypass` (the gateway creates "
        "the Vapi call and returns Vapi's TwiML) or `sip` (Twilio dials the tenant's Vapi SIP "
        "address, set by provisioning)",
    )
    vapi_assistant_id: VapiRef | None = None
    vapi_phone_number_id: VapiRef | None = Field(
        None, description="bypass: the Vapi phone number the calls are created on"
    )
    vapi_sip_uri: SipUri | None = Field(
        None, description="sip: the tenant's Vapi SIP address (set by provisioning)"
    )
    vapi_sip_phone_number_id: VapiRef | None = Field(
        None, description="sip: the Vapi phone number of that address (set by provisioning)"
    )
    dedicated_numbers: NumberList = Field(default_factory=list)
    price_per_minute: Price | None = None


def _sender(value: str) -> str:
    if value.startswith("+"):
        from gateway.validation import normalize_e164

        return normalize_e164(value)
    if re.fullmatch(r"MG[0-9a-fA-F]{32}", value):
        return value
    if re.fullmatch(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}", value):
        return value
    raise ValueError("must be an E.164 number, an alphanumeric sender id (1-11) or an MG… sid")


class SmsConfig(_Model):
    templates: dict[TemplateName, Annotated[BodyText, Field(min_length=1, max_length=1600)]] = (
        Field(default_factory=dict, examples=[{"reminder": "Hello {name}, see you at {time}."}])
    )
    default_message_type: MessageType = "transactional"


def _provider_names(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise ValueError("names a provider twice")
    return names


ProviderName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class SmsOperatorConfig(_Model):
    sender: Annotated[str, AfterValidator(_sender)] | None = None
    price_per_segment: Price | None = None
    # this tenant's SMS providers in order (failover), instead of SMS_PROVIDERS
    providers: (
        Annotated[
            list[ProviderName], Field(min_length=1, max_length=8), AfterValidator(_provider_names)
        ]
        | None
    ) = None


class EmailConfig(_Model):
    host: Hostname | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: Annotated[HeaderText, Field(max_length=320)] | None = None
    password: Secret | None = None
    from_email: EmailAddress | None = None
    from_name: Annotated[HeaderText, Field(max_length=100)] | None = None
    reply_to: EmailAddress | None = None

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587, "none": 25}[self.security]


class EmailOperatorConfig(_Model):
    pass


class WhatsAppTemplate(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,512}$")]
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")] = "en_US"


class WhatsAppConfig(_Model):
    provider: Literal["meta_cloud", "360dialog"] = "meta_cloud"
    phone_number_id: Annotated[str, Field(pattern=r"^\d{5,20}$")] | None = None
    business_account_id: Annotated[str, Field(pattern=r"^\d{5,20}$")] | None = None
    access_token: Secret | None = None
    api_key: Secret | None = None
    app_secret: Secret | None = None
    verify_token: Secret | None = None
    templates: dict[TemplateName, WhatsAppTemplate] = Field(default_factory=dict)


class WhatsAppOperatorConfig(_Model):
    pass


@dataclass(frozen=True)
class ChannelSpec:
    channel: ChannelType
    tenant_model: type[_Model]
    operator_model: type[_Model]
    secret_fields: tuple[str, ...]

    @property
    def operator_fields(self) -> tuple[str, ...]:
        return tuple(self.operator_model.model_fields)


SPECS: dict[str, ChannelSpec] = {
    "phone": ChannelSpec("phone", PhoneConfig, PhoneOperatorConfig, ()),
    "sms": ChannelSpec("sms", SmsConfig, SmsOperatorConfig, ()),
    "email": ChannelSpec("email", EmailConfig, EmailOperatorConfig, ("password",)),
    "whatsapp": ChannelSpec(
        "whatsapp",
        WhatsAppConfig,
        WhatsAppOperatorConfig,
        ("access_token", "api_key", "app_secret", "verify_token"),
    ),
}


def missing_fields(
    channel: str, settings: dict[str, Any], secrets: dict[str, str], gateway: dict[str, str | None]
) -> list[str]:
    """What still has to be set before the channel can be enabled (empty when ready)."""
    missing: list[str] = []

    def need(name: str, present: Any) -> None:
        if not present:
            missing.append(name)

    if channel == "phone":
        need("vapi_assistant_id", settings.get("vapi_assistant_id"))
        if settings.get("vapi_mode") == "sip":
            need("vapi_sip_uri", settings.get("vapi_sip_uri"))
        else:
            need("vapi_phone_number_id", settings.get("vapi_phone_number_id"))
        need(
            "forwarding_numbers",
            settings.get("forwarding_numbers") or settings.get("dedicated_numbers"),
        )
        need("VAPI_API_KEY", gateway.get("VAPI_API_KEY"))
    elif channel == "sms":
        need("sender", settings.get("sender") or gateway.get("TWILIO_PHONE_NUMBER"))
        need("TWILIO_ACCOUNT_SID", gateway.get("TWILIO_ACCOUNT_SID"))
        need("TWILIO_AUTH_TOKEN", gateway.get("TWILIO_AUTH_TOKEN"))
    elif channel == "email":
        need("host", settings.get("host"))
        need("from_email", settings.get("from_email"))
        if settings.get("username"):
            need("password", secrets.get("password"))
    elif channel == "whatsapp":
        if settings.get("provider", "meta_cloud") == "meta_cloud":
            need("phone_number_id", settings.get("phone_number_id"))
            need("access_token", secrets.get("access_token"))
            need("app_secret", secrets.get("app_secret"))
        else:
            need("api_key", secrets.get("api_key"))
        need("verify_token", secrets.get("verify_token"))
    return missing
