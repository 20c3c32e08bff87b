"""The types of the settings: each parses the text a source gives (environment, `.dev.vars`,
`[vars]`) itself, so that a bad value is a `ValueError` saying what is wrong, which
`gateway.settings_model.config_error` turns into one line naming the setting. Each also says
in words what it accepts (`Accepts`), for the README's tables.

The defaults are typed values, which pydantic-settings validates too: so each parser takes
a typed value as well as text.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, SecretStr

from gateway.net_guard import parse_ports
from gateway.validation import normalize_e164

FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# Twilio gives the voice webhook 15 s in all; the bridge must leave time for the fallback.
MAX_BRIDGE_TIMEOUT = 12.0


@dataclass(frozen=True)
class Accepts:
    """What a type accepts, in words, for the README's tables."""

    text: str


# -- parsers: text in, a typed value (or a ValueError naming what is wrong) out ---------------


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _whole(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"must be a whole number, got {value!r}") from None
    if isinstance(value, int) and value <= 0:
        raise ValueError("must be positive")
    return value


def _number(what: str, *, zero: bool, maximum: float | None = None, why: str = "") -> Any:
    def parse(value: Any) -> Any:
        if isinstance(value, str):
            raw = value
            try:
                value = float(raw.strip())
            except ValueError:
                raise ValueError(f"must be {what}, got {raw!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"must be {what}, got {raw!r}")
        if isinstance(value, int | float):
            low = "0 or more" if zero else "more than 0"
            if value < 0 or (value == 0 and not zero):
                raise ValueError(f"must be {low}{why}")
            if maximum is not None and value > maximum:
                raise ValueError(f"must be {low} and at most {maximum:g}{why}")
        return value

    return parse


def _amount(value: Any) -> Any:
    raw = value
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"must be a decimal number, got {raw!r}") from None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"must be a decimal number, got {raw!r}")
        if value < 0:
            raise ValueError("must not be negative")
    return value


def _flag(value: Any) -> Any:
    if isinstance(value, str):
        raw = value.strip().lower()
        if raw not in FLAGS:
            raise ValueError(f"must be true or false, got {raw!r}")
        return FLAGS[raw]
    return value


def _choice(*options: str, upper: bool = False) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        raw = value.strip() if isinstance(value, str) else value
        raw = raw.upper() if upper and isinstance(raw, str) else raw
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return raw

    return parse


def _url(value: Any) -> Any:
    if isinstance(value, str) and not re.match(r"^https?://[^\s/]+", value.strip()):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return _text(value)


def _postgres_url(value: Any) -> Any:
    # the value is never repeated: it may hold a password
    if isinstance(value, str) and not re.match(r"^postgres(ql)?://", value.strip()):
        raise ValueError("must be a postgresql:// URL")
    return _text(value)


def _account_sid(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"AC[0-9a-fA-F]{32}", value.strip()):
        raise ValueError("must look like AC followed by 32 hex digits")
    return _text(value)


def _graph_version(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"v\d+\.\d+", value.strip()):
        raise ValueError(f"must look like v21.0, got {value!r}")
    return _text(value)


def _admin_key(value: Any) -> Any:
    if isinstance(value, str) and len(value.strip()) < 16:
        raise ValueError("must be at least 16 characters long")
    return _text(value)


def _phone(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return normalize_e164(value)
        except ValueError as exc:
            raise ValueError(f": {value.strip()!r} {exc}") from None
    return value


def _phones(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(_phone(part) for part in value.split(",") if part.strip())
    return value


def _names(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    names = tuple(part.strip().lower() for part in value.split(","))
    if not names or not all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names):
        raise ValueError(f"must list provider names separated by commas, got {value!r}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"names {', '.join(twice)} more than once")
    return names


def _ports(value: Any) -> Any:
    if isinstance(value, str):
        parse_ports(value)  # its ValueError says what is wrong
        return value.strip()
    return value


def _ed25519_key(value: Any) -> Any:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError("must be the base64 Ed25519 public key (32 bytes) shown by Telnyx")
        return value.strip()
    return value


# -- the types of the settings ------------------------------------------------------------------

Secret = Annotated[SecretStr, BeforeValidator(_text), Accepts("secret")]
AdminKey = Annotated[SecretStr, BeforeValidator(_admin_key), Accepts("secret, 16+ characters")]
Text = Annotated[str, BeforeValidator(_text), Accepts("text")]
FilePath = Annotated[Path, BeforeValidator(_text), Accepts("path")]
Url = Annotated[str, BeforeValidator(_url), Accepts("http(s) URL")]
DatabaseUrl = Annotated[
    SecretStr, BeforeValidator(_postgres_url), Accepts("secret `postgresql://` URL")
]
WholeNumber = Annotated[int, BeforeValidator(_whole), Accepts("whole number > 0")]
Rate = Annotated[float, BeforeValidator(_number("a number", zero=False)), Accepts("number > 0")]
Seconds = Annotated[
    float,
    BeforeValidator(_number("a number of seconds", zero=True, why=" seconds")),
    Accepts("seconds ≥ 0"),
]
PositiveSeconds = Annotated[
    float,
    BeforeValidator(_number("a number of seconds", zero=False, why=" seconds")),
    Accepts("seconds > 0"),
]
ReadDeadline = Annotated[
    float,
    BeforeValidator(_number("a number of seconds", zero=False, maximum=3600, why=" seconds")),
    Accepts("seconds, > 0 and ≤ 3600"),
]
BridgeTimeout = Annotated[
    float,
    BeforeValidator(
        _number(
            "a number of seconds",
            zero=False,
            maximum=MAX_BRIDGE_TIMEOUT,
            why=" seconds (Twilio waits 15 s for the whole answer)",
        )
    ),
    Accepts(f"seconds, > 0 and ≤ {MAX_BRIDGE_TIMEOUT:g}"),
]
Amount = Annotated[Decimal, BeforeValidator(_amount), Accepts("decimal ≥ 0")]
Flag = Annotated[bool, BeforeValidator(_flag), Accepts("`true` or `false`")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    BeforeValidator(_choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True)),
    Accepts("`DEBUG` … `CRITICAL`"),
]
OnOff = Annotated[
    Literal["on", "off"], BeforeValidator(_choice("on", "off")), Accepts("`on` or `off`")
]


def _days_or_off(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    return _whole(value)


# None: off
DaysOrOff = Annotated[
    int | None, BeforeValidator(_days_or_off), Accepts("whole number of days > 0, or `off`")
]


def _url_or_off(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    return _url(value)


# None: off
UrlOrOff = Annotated[str | None, BeforeValidator(_url_or_off), Accepts("http(s) URL, or `off`")]
AccountSid = Annotated[str, BeforeValidator(_account_sid), Accepts("`AC` + 32 hex digits")]
GraphVersion = Annotated[str, BeforeValidator(_graph_version), Accepts("`v<major>.<minor>`")]
PhoneNumber = Annotated[str, BeforeValidator(_phone), Accepts("E.164 number")]
PhoneNumbers = Annotated[
    tuple[str, ...], BeforeValidator(_phones), Accepts("E.164 numbers, comma-separated")
]
ProviderNames = Annotated[
    tuple[str, ...], BeforeValidator(_names), Accepts("names, comma-separated, in order")
]
Ports = Annotated[str, BeforeValidator(_ports), Accepts("ports, comma-separated, or `*`")]
Ed25519Key = Annotated[str, BeforeValidator(_ed25519_key), Accepts("base64 Ed25519 public key")]
