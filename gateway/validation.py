"""What every request goes through before a handler sees it: the JSON reader for untrusted
bodies, the base of every request model, and the field types shared by request models
(E.164 numbers read in the tenant's region, email addresses, safe text, bounded instants).

Phone numbers in national form ("06 12 34 56 78") are read in the region found in the
pydantic validation context (`{"region": "FR"}`). `routing.Endpoint` puts the tenant's region
there for tenant endpoints (`validation_context`), so a service that validates a request
model later in the same request (channel settings) reads numbers the same way.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, TypeVar

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from gateway.errors import BadRequest, ValidationFailed

M = TypeVar("M", bound=BaseModel)

# -- the JSON reader ----------------------------------------------------------------------

# deeper than any real request (a Vapi message with a tool's JSON schema is ~12 levels); the
# limit keeps json, pydantic and json.dumps far from Python's recursion limit
MAX_JSON_DEPTH = 64
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads_json(raw: bytes | str) -> Any:
    """json.loads for untrusted input. Anything that is not plain JSON a handler can use is a
    ValueError with a sentence: NaN/Infinity, a number out of range (1e999, more than 4,300
    digits), nesting deeper than MAX_JSON_DEPTH, a lone UTF-16 surrogate (\\ud800)."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"it is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8") from None
    except ValueError as exc:  # int(): more digits than Python converts
        if "digits" in str(exc):
            raise ValueError("a number has more than 4,300 digits") from None
        raise ValueError(str(exc)) from None
    escapes = (
        _SURROGATE_ESCAPE.search(raw)
        if isinstance(raw, str)
        else _SURROGATE_ESCAPE_BYTES.search(raw)
    )
    _check_tree(data, strings=escapes is not None)
    return data


def _check_tree(data: Any, strings: bool) -> None:
    """Depth, finite numbers and (when the text had \\uD8xx escapes) encodable strings,
    walked without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if strings:
                _check_strings(value.keys())
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            _check_scalar(value, strings)
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"it is nested deeper than {MAX_JSON_DEPTH} levels")
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            else:
                _check_scalar(child, strings)


def _check_scalar(value: Any, strings: bool) -> None:
    if type(value) is float and not math.isfinite(value):
        raise ValueError("a number is out of range")
    if strings and type(value) is str:
        _check_strings((value,))


def _check_strings(values: Any) -> None:
    for value in values:
        if _LONE_SURROGATE.search(value):
            raise ValueError("a string contains a lone UTF-16 surrogate")


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise BadRequest("The request body is empty; JSON was expected", code="empty_body")
    try:
        return loads_json(raw)
    except ValueError as exc:
        raise BadRequest(
            f"The request body is not valid JSON: {exc}", code="malformed_json"
        ) from None


# -- the validation context and request models ----------------------------------------------

_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "validation_context", default=None
)


@contextlib.contextmanager
def validation_context(**values: Any) -> Iterator[None]:
    """The context `validate_model` hands to pydantic while this block runs (the tenant's
    `region`, for national-format phone numbers)."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **values})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def context_region(info: ValidationInfo | None) -> str | None:
    context = info.context if info is not None else None
    region = context.get("region") if isinstance(context, dict) else None
    return region if isinstance(region, str) else None


class RequestModel(BaseModel):
    """The base of every request model. Unknown fields are refused. An empty string for a
    field means the field was not given, as a settings form posts an empty input: an optional
    field keeps its default, a required one is "Field required". Fields listed in
    `blank_clears` (a PATCH's nullable fields) take "" as null instead."""

    model_config = ConfigDict(extra="forbid")
    blank_clears: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _blank_means_not_given(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(v == "" for v in data.values()):
            return data
        names = {field.alias or name: name for name, field in cls.model_fields.items()}
        kept: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, str) and value == "" and key in names:
                if names[key] in cls.blank_clears:
                    kept[key] = None
                continue
            kept[key] = value
        return kept


def field_errors(exc: PydanticValidationError) -> list[dict[str, str]]:
    fields = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(str(part) for part in err["loc"]) or "body"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "is not a known field"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        fields.append({"field": loc, "message": message})
    return fields


def validate_model(model: type[M], data: Any, context: dict[str, Any] | None = None) -> M:
    try:
        return model.model_validate(
            data, context=context if context is not None else _CONTEXT.get()
        )
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc)) from None


# -- phone numbers --------------------------------------------------------------------------


def normalize_e164(value: str, region: str | None = None) -> str:
    """E.164 from an international number ("+33 6 12 34 56 78", "0033612345678") or, given
    the ISO region it is dialled in, from a national one ("06 12 34 56 78" in FR)."""
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+") and region is None:
        raise ValueError("must be an international number in E.164 form, starting with +")
    if len(raw) > 64:
        raise ValueError("is not a phone number")
    try:
        parsed = phonenumbers.parse(raw, None if raw.startswith("+") else region)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("is not a valid phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def region_of(e164: str | None) -> str | None:
    """The ISO region an E.164 number belongs to (None when it is not one)."""
    if not e164 or not e164.startswith("+"):
        return None
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None
    return str(region) if region and region != "ZZ" else None


def _e164_in_context(value: str, info: ValidationInfo) -> str:
    return normalize_e164(value, context_region(info))


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("is not an ISO 3166-1 alpha-2 country code such as FR")
    return code


E164 = Annotated[
    str,
    AfterValidator(_e164_in_context),
    Field(
        examples=["+33612345678"],
        description="International (+33 6 12 34 56 78), or national in the tenant's country",
    ),
]
Country = Annotated[str, AfterValidator(_country), Field(examples=["FR"])]

# -- text -----------------------------------------------------------------------------------

# a body may hold tabs and line breaks; no other C0 control (NUL…), and not the Unicode line
# and paragraph separators, which JSON, JavaScript and some SMS gateways treat differently
_BODY_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\u2028\u2029]")
# a header field, a name, a label: one line, so no control character at all (tab aside)
_LINE_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _describe(char: str) -> str:
    if char in "\r\n\x85\u2028\u2029":
        return "line breaks"
    return f"control characters (U+{ord(char):04X})"


def safe_body(value: str) -> str:
    found = _BODY_FORBIDDEN.search(value)
    if found:
        raise ValueError(f"must not contain {_describe(found.group())}")
    return value


def one_line(value: str) -> str:
    found = _LINE_FORBIDDEN.search(value)
    if found:
        raise ValueError(f"must not contain {_describe(found.group())}")
    return value


no_line_breaks = one_line  # the name the first version used


def normalize_email(value: str) -> str:
    one_line(value)
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return str(result.normalized)


EmailAddress = Annotated[
    str, AfterValidator(normalize_email), Field(examples=["contact@example.com"])
]
# text sent to or shown to people: SMS and WhatsApp bodies, email text and HTML, templates,
# notes, descriptions
BodyText = Annotated[str, AfterValidator(safe_body)]
# one line: email subject and names, customer names, labels, the tenant's name
HeaderText = Annotated[str, AfterValidator(one_line)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", examples=["acme-dental"])]
TemplateName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]

# -- instants and days ----------------------------------------------------------------------

# What a tenant or the operator may send as a date or an instant. The range keeps every
# computation done with it (a day later, a period before, a shift to any UTC offset) inside
# what Python's datetime holds; nothing the gateway schedules or reports is outside it.
MIN_YEAR, MAX_YEAR = 1970, 2999
_RANGE_TEXT = f"must be between {MIN_YEAR}-01-01 and {MAX_YEAR}-12-31 (UTC)"


def _iso_text(value: Any) -> Any:
    # pydantic would read a number as seconds since 1970: this API speaks ISO-8601 only
    if isinstance(value, int | float):
        raise ValueError("must be an ISO-8601 string such as 2026-12-01T09:00:00+01:00")
    return value


def instant_in_range(value: datetime) -> datetime:
    """An aware datetime whose UTC instant lies in years MIN_YEAR..MAX_YEAR."""
    # checked on the local year first: converting year 1 or 9999 to UTC can overflow
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(_RANGE_TEXT)
    if value.tzinfo is not None and not MIN_YEAR <= value.astimezone(UTC).year <= MAX_YEAR:
        raise ValueError(_RANGE_TEXT)
    return value


def day_in_range(value: date) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(_RANGE_TEXT)
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text),
    AfterValidator(instant_in_range),
    Field(examples=["2026-12-01T09:00:00+01:00"]),
]
Day = Annotated[
    date, BeforeValidator(_iso_text), AfterValidator(day_in_range), Field(examples=["2026-12-01"])
]

# -- host names -----------------------------------------------------------------------------


def is_hostname(value: str) -> str:
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", value):
        raise ValueError("is not a host name")
    return value.lower()


Hostname = Annotated[str, AfterValidator(is_hostname), Field(examples=["smtp.example.com"])]
