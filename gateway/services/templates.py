"""`{placeholder}` templates: render with variables, and name every missing one."""

from __future__ import annotations

import string
from collections.abc import Mapping

from gateway.errors import ValidationFailed

_FORMATTER = string.Formatter()


def placeholders(text: str) -> list[str]:
    names = []
    for _, field, spec, conversion in _FORMATTER.parse(text):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"unsupported placeholder {{{field}}}: use {{name}}")
        names.append(field)
    return names


def render(text: str, variables: Mapping[str, object], field: str = "variables") -> str:
    try:
        names = placeholders(text)
    except ValueError as exc:
        raise ValidationFailed.one("template", str(exc)) from None
    missing = [n for n in dict.fromkeys(names) if n not in variables]
    if missing:
        raise ValidationFailed(
            [
                {"field": f"{field}.{n}", "message": "is used by the template but not given"}
                for n in missing
            ]
        )
    return text.format_map({k: str(v) for k, v in variables.items()})
