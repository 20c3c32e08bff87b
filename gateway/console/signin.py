"""Sign in with an API key, sign out, and the language switch.

The key typed into the sign-in form is checked exactly as the API checks a Bearer key
(`gateway.auth`): the admin key opens the operator's console, a tenant's active key that
tenant's console; anything else is "invalid API key". Only the key's id goes into the
session, never the key.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.auth import require_tenant
from gateway.console.form_body import read_form
from gateway.console.i18n import LANG_COOKIE, LANGUAGES
from gateway.console.render import render
from gateway.console.session import (
    PREFIX,
    SessionCodec,
    SignInRequired,
    end_session,
    new_csrf_token,
    require_console,
    start_session,
)
from gateway.domain.key_scopes import ALL_SCOPES
from gateway.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from gateway.wiring import Gateway

_REASONS = frozenset({"signin.session_ended", "signin.signed_out"})


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _key_request(key: str) -> Request:
    """The key as the API receives it, so the API's own check decides."""
    header = f"Bearer {key}".encode("utf-8", "replace")
    return Request({"type": "http", "method": "POST", "headers": [(b"authorization", header)]})


async def sign_in_page(request: Request) -> Response:
    gw = _gateway(request)
    try:
        await require_console(request, gw, need_tenant=False)
    except SignInRequired:
        pass
    else:
        return RedirectResponse(f"{PREFIX}/", status_code=303)
    reason = request.query_params.get("reason")
    return _form(request, gw, notice=reason if reason in _REASONS else None)


def _form(
    request: Request, gw: Gateway, *, error: str | None = None, notice: str | None = None
) -> Response:
    codec = SessionCodec.of(gw)
    session = codec.read(request)
    token = session.get("csrf") if session.get("kind") is None else None
    token = token if isinstance(token, str) else new_csrf_token()
    request.state.csrf_token = token
    response = render(
        request,
        "sign_in.html",
        {"error": error, "notice": notice},
        status=401 if error == "signin.invalid_key" else 403 if error else 200,
    )
    codec.write(response, {"csrf": token})
    return response


async def sign_in(request: Request) -> Response:
    gw = _gateway(request)
    form = await read_form(request)
    key = str(form.get("api_key") or "").strip()
    if key and hmac.compare_digest(key.encode(), gw.settings.admin_api_key.encode()):
        response = RedirectResponse(f"{PREFIX}/tenants", status_code=303)
        start_session(response, gw, "operator", None, "operator")
        return response
    try:
        principal = await require_tenant(_key_request(key), gw.db, gw.settings.admin_api_key)
    except Unauthorized:
        return _form(request, gw, error="signin.invalid_key")
    except Forbidden:
        return _form(request, gw, error="signin.suspended")
    if set(principal.scopes) != set(ALL_SCOPES):
        # the console reads, sends tests and edits settings: a key scoped to less than all
        # of that would do more here than through the API
        return _form(request, gw, error="signin.scoped_key")
    response = RedirectResponse(f"{PREFIX}/", status_code=303)
    start_session(response, gw, "tenant", principal.tenant.id, principal.key_id)
    return response


async def sign_out(request: Request) -> Response:
    response = RedirectResponse(f"{PREFIX}/sign-in?reason=signin.signed_out", status_code=303)
    end_session(response, _gateway(request))
    return response


def safe_next(value: str | None) -> str:
    """Only a console path: never another site (`//host`, `/\\host`, a scheme)."""
    if value and value.startswith(PREFIX) and "//" not in value and "\\" not in value:
        return value
    return f"{PREFIX}/"


async def switch_language(request: Request) -> Response:
    lang = request.path_params["lang"]
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    if lang in LANGUAGES:
        gw = _gateway(request)
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            path=PREFIX,
            samesite="strict",
            secure=SessionCodec.of(gw).secure,
        )
    return response
