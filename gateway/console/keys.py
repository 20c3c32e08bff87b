"""The tenant's API keys (`/console/keys`): every key with its scopes, when it was made and
last used, and whether it is revoked. The operator, who issues and revokes keys through
`/admin/tenants/{id}/api-keys`, does the same here: a new key with a label and its scopes
(shown once, on the answer to that post, never stored), and revoking one. A tenant sees its
keys and cannot change them, as in the API.

Creation goes through the API's own request model (`ApiKeyCreate`), so the page refuses what
the API refuses, with the API's message next to the input it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.console.form_body import read_form
from gateway.console.render import render
from gateway.console.session import PREFIX, ConsoleUser, require_console
from gateway.domain.key_scopes import ALL_SCOPES
from gateway.errors import Forbidden, ValidationFailed
from gateway.routes.admin import ApiKeyCreate
from gateway.services import tenants as tenant_service
from gateway.validation import validate_model

if TYPE_CHECKING:
    from gateway.wiring import Gateway


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def _operator_only(user: ConsoleUser) -> None:
    if not user.is_operator:
        raise Forbidden("Only the operator can issue or revoke API keys", code="operator_only")


async def _page(request: Request, user: ConsoleUser, status: int = 200, **context: Any) -> Response:
    keys = await tenant_service.list_api_keys(_gateway(request).db, user.principal.tenant.id)
    defaults: dict[str, Any] = {
        "keys": keys,
        "scopes": ALL_SCOPES,
        "values": {"label": "", "scopes": list(ALL_SCOPES)},
        "errors": {},
        "created": None,
        "revoked": None,
    }
    return render(request, "keys/page.html", {**defaults, **context}, status=status)


async def keys_page(request: Request) -> Response:
    user = await require_console(request, _gateway(request))
    return await _page(request, user)


async def create_key(request: Request) -> Response:
    gw = _gateway(request)
    user = await require_console(request, gw)
    _operator_only(user)
    form = await read_form(request)
    label = str(form.get("label") or "").strip()
    scopes = [str(s) for s in form.getlist("scopes")]
    values = {"label": label, "scopes": scopes}
    try:
        body = validate_model(ApiKeyCreate, {"label": label or None, "scopes": scopes})
    except ValidationFailed as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.details["fields"]:
            name = "scopes" if error["field"].startswith("scopes") else "label"
            errors.setdefault(name, []).append(error["message"])
        return await _page(request, user, 422, values=values, errors=errors)
    created = await tenant_service.create_api_key(
        gw.db, user.principal.tenant.id, body.label, tuple(body.scopes)
    )
    return await _page(request, user, 201, created=created)


async def revoke_key(request: Request) -> Response:
    gw = _gateway(request)
    user = await require_console(request, gw)
    _operator_only(user)
    await tenant_service.revoke_api_key(
        gw.db, user.principal.tenant.id, request.path_params["key_id"]
    )
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)
