"""Each channel page's form: which inputs it has (exactly the fields of the channel's models
in `gateway.channel_models`), the values it shows, and the merge patch a submitted form
becomes — the body the API's `PUT /api/channels/{type}/config` would receive.

A form posts every input, so the patch sets every field: an emptied input clears its field
(the API reads "" as null), a blank secret is left out (the stored one is kept) unless its
"clear" box is ticked (null). Lists (numbers) are one per line; opening hours are one line
per weekday, `09:00-12:00, 14:00-18:00`; templates are rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from starlette.datastructures import FormData

Kind = Literal["text", "number", "select", "secret", "numbers", "textarea", "email", "tel"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_PREFIX = "booking.opening_hours."


@dataclass(frozen=True)
class Input:
    name: str  # the API's field, dotted when nested ("booking.slot_minutes")
    kind: Kind = "text"
    choices: tuple[str, ...] = ()
    # WhatsApp: the provider(s) the field belongs to; shown only for those
    providers: tuple[str, ...] = ()
    step: str | None = None  # number inputs: "any" for prices

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-").replace("_", "-")


PHONE = (
    Input("forwarding_numbers", "numbers"),
    Input("fallback_number", "tel"),
    Input("greeting", "textarea"),
)
BOOKING = (
    Input("booking.timezone"),
    Input("booking.slot_minutes", "number"),
    Input("booking.buffer_minutes", "number"),
    Input("booking.min_notice_minutes", "number"),
    Input("booking.capacity", "number"),
    Input("booking.horizon_days", "number"),
)
HOURS = tuple(Input(HOURS_PREFIX + day) for day in WEEKDAYS)
SMS = (
    Input(
        "default_message_type",
        "select",
        ("transactional", "marketing", "notification", "appointment_reminder"),
    ),
)
EMAIL = (
    Input("host"),
    Input("port", "number"),
    Input("security", "select", ("starttls", "tls", "none")),
    Input("username"),
    Input("password", "secret"),
    Input("from_email", "email"),
    Input("from_name"),
    Input("reply_to", "email"),
)
_META, _D360 = "meta_cloud", "360dialog"
WHATSAPP = (
    Input("provider", "select", (_META, _D360)),
    Input("phone_number_id", providers=(_META,)),
    Input("business_account_id", providers=(_META,)),
    Input("access_token", "secret", providers=(_META,)),
    Input("app_secret", "secret", providers=(_META,)),
    Input("api_key", "secret", providers=(_D360,)),
    Input("verify_token", "secret", providers=(_META, _D360)),
)
# the operator-only fields, shown to the operator on the tenant's page
PHONE_OPERATOR = (
    Input("vapi_mode", "select", ("bypass", "sip")),
    Input("vapi_assistant_id"),
    Input("vapi_phone_number_id"),
    Input("vapi_sip_uri"),
    Input("vapi_sip_phone_number_id"),
    Input("dedicated_numbers", "numbers"),
    Input("price_per_minute", "number", step="any"),
)
SMS_OPERATOR = (
    Input("sender"),
    Input("price_per_segment", "number", step="any"),
    Input("providers"),
)

TENANT_INPUTS: dict[str, tuple[Input, ...]] = {
    "phone": PHONE + BOOKING + HOURS,
    "sms": SMS,
    "email": EMAIL,
    "whatsapp": WHATSAPP,
}
OPERATOR_INPUTS: dict[str, tuple[Input, ...]] = {"phone": PHONE_OPERATOR, "sms": SMS_OPERATOR}
# the inputs that are rows of a table (name → text), not single fields
ROW_FIELDS: dict[str, tuple[str, ...]] = {
    "sms": ("name", "text"),
    "whatsapp": ("alias", "name", "language"),
}


def _dig(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(value)
    return str(value)


def hours_text(ranges: Sequence[Mapping[str, str]] | None) -> str:
    return ", ".join(f"{r.get('open', '')}-{r.get('close', '')}" for r in ranges or [])


def parse_hours(text: str) -> list[dict[str, str]]:
    """`09:00-12:00, 14:00-18:00` → the API's ranges; the API judges what is typed."""
    ranges = []
    for chunk in re.split(r"[,;]", text):
        chunk = chunk.strip()
        if not chunk:
            continue
        parts = re.split(r"\s*[-\u2013\u2014]\s*", chunk, maxsplit=1)
        opening, closing = parts[0], parts[1] if len(parts) > 1 else ""
        ranges.append({"open": opening.strip(), "close": closing.strip()})
    return ranges


def parse_lines(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[\n,;]", text) if item.strip()]


@dataclass
class FormValues:
    """What the form shows: one text per input, and the template rows."""

    fields: dict[str, str]
    rows: list[dict[str, str]]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def values_from_view(
    channel: str, view: Mapping[str, Any], *, operator: bool = False
) -> FormValues:
    source = view["operator_settings"] if operator else view["settings"]
    inputs = OPERATOR_INPUTS.get(channel, ()) if operator else TENANT_INPUTS[channel]
    fields: dict[str, str] = {}
    for item in inputs:
        if item.kind == "secret":
            continue
        value = _dig(source, item.name)
        if item.name.startswith(HOURS_PREFIX):
            fields[item.name] = hours_text(value)
        elif item.name == "providers" and isinstance(value, list):
            fields[item.name] = ", ".join(value)
        else:
            fields[item.name] = _as_text(value)
    rows: list[dict[str, str]] = []
    if not operator and channel == "sms":
        templates = view["settings"].get("templates") or {}
        rows = [{"name": name, "text": text} for name, text in templates.items()]
    elif not operator and channel == "whatsapp":
        templates = view["settings"].get("templates") or {}
        rows = [
            {"alias": alias, "name": t.get("name", ""), "language": t.get("language", "")}
            for alias, t in templates.items()
        ]
    return FormValues(fields, rows)


def values_from_form(channel: str, form: FormData, *, operator: bool = False) -> FormValues:
    inputs = OPERATOR_INPUTS.get(channel, ()) if operator else TENANT_INPUTS[channel]
    fields = {i.name: str(form.get(i.name) or "") for i in inputs if i.kind != "secret"}
    rows: list[dict[str, str]] = []
    columns = ROW_FIELDS.get(channel) if not operator else None
    if columns:
        lists = [form.getlist(f"template_{column}") for column in columns]
        for cells in zip(*lists, strict=False):
            row = {column: str(cell) for column, cell in zip(columns, cells, strict=True)}
            if any(value.strip() for value in row.values()):
                rows.append(row)
    return FormValues(fields, rows)


def _set(patch: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    target = patch
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def tenant_patch(
    channel: str, values: FormValues, form: FormData, stored: Mapping[str, Any]
) -> dict[str, Any]:
    """The merge patch of a submitted tenant form. `stored` is the API view's settings, to
    remove the templates the form no longer lists."""
    patch: dict[str, Any] = {}
    for item in TENANT_INPUTS[channel]:
        if item.kind == "secret":
            typed = str(form.get(item.name) or "")
            if form.get(f"clear_{item.name}"):
                patch[item.name] = None
            elif typed:
                patch[item.name] = typed
            continue
        text = values.get(item.name).strip()
        if item.name.startswith(HOURS_PREFIX):
            _set(patch, item.name, parse_hours(text))
        elif item.kind == "numbers":
            patch[item.name] = parse_lines(text)
        else:
            _set(patch, item.name, text)
    if channel in ROW_FIELDS:
        patch["templates"] = _templates_patch(channel, values.rows, stored.get("templates") or {})
    return patch


def _templates_patch(
    channel: str, rows: list[dict[str, str]], stored: Mapping[str, Any]
) -> dict[str, Any]:
    wanted: dict[str, Any] = {}
    for row in rows:
        if channel == "sms":
            wanted[row["name"].strip()] = row["text"]
        else:
            wanted[row["alias"].strip()] = {
                "name": row["name"].strip(),
                "language": row["language"].strip(),
            }
    removed: dict[str, Any] = {name: None for name in stored if name not in wanted}
    return {**removed, **wanted}


def operator_patch(channel: str, values: FormValues) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for item in OPERATOR_INPUTS[channel]:
        text = values.get(item.name).strip()
        if item.kind == "numbers":
            patch[item.name] = parse_lines(text)
        elif item.name == "providers":
            patch[item.name] = parse_lines(text) or None
        else:
            patch[item.name] = text or None
    return patch


def error_key(field: str, channel: str, rows: Sequence[Mapping[str, str]] = ()) -> str:
    """The input an API error's `field` belongs to: `booking.opening_hours.mon.0.close` →
    the Monday line, `templates.reminder` → that template's row, `forwarding_numbers.1` →
    the numbers box; an unknown field → the form as a whole ("")."""
    if field.startswith(HOURS_PREFIX):
        return ".".join(field.split(".")[:3])
    if field.startswith("templates"):
        parts = field.split(".")
        if len(parts) > 1:
            names = [r.get("name" if channel == "sms" else "alias", "").strip() for r in rows]
            if parts[1] in names:
                return f"templates.{names.index(parts[1])}"
        return "templates"
    known = {i.name for i in TENANT_INPUTS.get(channel, ()) + OPERATOR_INPUTS.get(channel, ())}
    parts = field.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return ""


def errors_by_input(
    fields: Sequence[Mapping[str, str]], channel: str, rows: Sequence[Mapping[str, str]] = ()
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in fields:
        errors.setdefault(error_key(error["field"], channel, rows), []).append(error["message"])
    return errors
