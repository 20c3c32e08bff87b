"""`render(request, template, context)`: a console page or htmx partial as HTML.

Every template gets `t` (the page language's translations), `lang`, `user` (the signed-in
`ConsoleUser`, or None on the sign-in page), `csrf_token` (for forms' hidden `csrf_token`
input; base.html also sends it as htmx's `X-CSRF-Token` header), `prefix` ("/console") and
`static(path)`. Templates are autoescaped; an undefined variable is an error, not a blank.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway.console.i18n import (
    field_labeller,
    format_money,
    format_number,
    language_of,
    optional_text,
    translator,
)
from gateway.console.session import PREFIX

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
# bumped with the static files, so browsers never keep an old console.js or htmx
STATIC_VERSION = "1"


def _static(path: str) -> str:
    return f"{PREFIX}/static/{path}?v={STATIC_VERSION}"


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.globals.update(prefix=PREFIX, static=_static)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def page_context(request: Request) -> dict[str, Any]:
    """What every template sees, before the page's own context."""
    lang = language_of(request)
    user = getattr(request.state, "console_user", None)
    csrf = user.csrf_token if user is not None else getattr(request.state, "csrf_token", "")
    return {
        "request": request,
        "lang": lang,
        "t": translator(lang),
        "label": field_labeller(lang),
        "hint": optional_text(lang, "hint."),
        "number": lambda value, digits=0: format_number(value, lang, digits),
        "money": lambda value, digits=4: format_money(value, lang, digits),
        "user": user,
        "csrf_token": csrf,
        "path": request.url.path,
    }


def render_text(request: Request, template_name: str, context: Mapping[str, Any]) -> str:
    template = environment.get_template(template_name)
    return template.render({**page_context(request), **context})


def render(
    request: Request,
    template_name: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    html = render_text(request, template_name, context or {})
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))
