"""Field types shared by request models: E.164 numbers, email addresses, header-safe text."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from pydantic import ValidationError as PydanticValidationError

from gateway.errors import BadRequest, ValidationFailed

M = TypeVar("M", bound=BaseModel)


def normalize_e164(value: str, region: str | None = None) -> str:
    """E.164 from an international number ("+33 6 12 34 56 78", "0033612345678") or, given
    the ISO region it is dialled in, from a national one ("06 12 34 56 78" in FR)."""
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+") and region is None:
        raise ValueError("must be an international number in E.164 form, starting with +")
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


def normalize_email(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain line breaks")
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return str(result.normalized)


def no_line_breaks(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain line breaks")
    return value


E164 = Annotated[str, AfterValidator(normalize_e164), Field(examples=["+33612345678"])]
EmailAddress = Annotated[
    str, AfterValidator(normalize_email), Field(examples=["contact@example.com"])
]
HeaderText = Annotated[str, AfterValidator(no_line_breaks)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", examples=["acme-dental"])]
TemplateName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def is_hostname(value: str) -> str:
    if not re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", value):
        raise ValueError("is not a host name")
    return value.lower()


Hostname = Annotated[str, AfterValidator(is_hostname), Field(examples=["smtp.example.com"])]


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


def validate_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc)) from None


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise BadRequest("The request body is empty; JSON was expected", code="empty_body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(
            f"The request body is not valid JSON: {exc}", code="malformed_json"
        ) from None
