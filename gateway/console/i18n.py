"""The console's languages: English (default) and French.

The page's language is the `lang` cookie the language switch sets, else the best of the
browser's `Accept-Language`, else English. Strings live in i18n/<lang>.json as flat
`"area.key": "text"` entries; `{name}` placeholders are filled by `t(key, name=…)`. A key
missing from French falls back to English, and a key missing from both shows as itself (the
tests check both files hold the same keys).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

from starlette.requests import Request

LANGUAGES = ("en", "fr")
DEFAULT = "en"
LANG_COOKIE = "lang"
_DIR = Path(__file__).parent / "i18n"

Translate = Callable[..., str]


@cache
def catalog(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    return data


def from_accept_language(header: str) -> str | None:
    """The first of our languages in the header's preference order (q-values honoured)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else None


def language_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return from_accept_language(request.headers.get("accept-language", "")) or DEFAULT


def translator(lang: str) -> Translate:
    strings = catalog(lang)
    fallback = catalog(DEFAULT)

    def t(key: str, **params: object) -> str:
        text = strings.get(key) or fallback.get(key) or key
        return text.format(**params) if params else text

    return t


def optional_text(lang: str, prefix: str) -> Callable[[str], str]:
    """`prefix + name`'s text, or "" when there is none (a field without a hint)."""
    strings = catalog(lang)
    fallback = catalog(DEFAULT)

    def text(name: str) -> str:
        key = prefix + name
        return strings.get(key) or fallback.get(key) or ""

    return text


def field_labeller(lang: str) -> Callable[[str], str]:
    """A field's label ("from_email" → "From email"); a gateway setting (upper case, what
    the operator provides) or an unknown name shows as itself."""
    strings = catalog(lang)
    fallback = catalog(DEFAULT)

    def label(name: str) -> str:
        key = f"field.{name}"
        return strings.get(key) or fallback.get(key) or name

    return label


def format_number(value: float | int, lang: str, digits: int = 0) -> str:
    """`1234.5` → "1,234.50" in English, "1 234,50" in French (narrow no-break space)."""
    text = f"{value:,.{digits}f}"
    if lang == "fr":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def format_money(value: float | int, lang: str, digits: int = 4) -> str:
    amount = format_number(value, lang, digits)
    return f"{amount}\u00a0€" if lang == "fr" else f"€{amount}"
