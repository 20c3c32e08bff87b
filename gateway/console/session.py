"""The console's session: a signed cookie naming who signed in, never the key itself.

The cookie (`cgw_console`, `HttpOnly`, `SameSite=Strict`, `Path=/console`, `Secure` when
PUBLIC_BASE_URL is https) holds `{"kind": "tenant"|"operator", "tenant_id", "key_id",
"csrf"}`, signed with itsdangerous under a key derived from ADMIN_API_KEY: changing the admin
key ends every session. Before sign-in it holds only a CSRF token, for the sign-in form.

`require_console` checks the session on every request: a tenant's key that was revoked since,
or a tenant no longer active, ends the session (back to the sign-in page).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from gateway.db import TenantDB
from gateway.errors import NotFound
from gateway.services import tenants as tenant_service
from gateway.services.principal import TenantPrincipal
from gateway.store.tenants import Tenant

if TYPE_CHECKING:
    from gateway.wiring import Gateway

PREFIX = "/console"
COOKIE = "cgw_console"
# a session lasts a working day; signing in again starts a new one
MAX_AGE_SECONDS = 12 * 3600
OPERATOR_KEY_ID = "operator"
Kind = Literal["tenant", "operator"]


class SignInRequired(Exception):
    """No valid session: the sign-in page, with `reason` shown there (a translation key)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "sign in")
        self.reason = reason


class ConsoleRedirect(Exception):
    """Go to another console page (the operator has not opened a tenant yet)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass(frozen=True)
class ConsoleUser:
    """Who is signed in, and whose console is shown: the tenant's own, or the tenant the
    operator opened (`tenant` is None while the operator has opened none)."""

    kind: Kind
    tenant: Tenant | None
    key_id: str
    csrf_token: str
    gateway: Gateway

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"

    @property
    def principal(self) -> TenantPrincipal:
        """The tenant as the services expect it (what the API's tenant auth yields)."""
        if self.tenant is None:
            raise ConsoleRedirect(f"{PREFIX}/tenants")
        return TenantPrincipal(self.tenant, self.key_id, TenantDB(self.gateway.db, self.tenant.id))

    @property
    def db(self) -> TenantDB:
        return self.principal.db


class SessionCodec:
    """Signs and reads the session cookie."""

    def __init__(self, admin_key: str, secure: bool) -> None:
        secret = hmac.new(admin_key.encode(), b"channel-gateway console session", hashlib.sha256)
        self._serializer = URLSafeTimedSerializer(secret.hexdigest(), salt="console-session")
        self.secure = secure

    @classmethod
    def of(cls, gw: Gateway) -> SessionCodec:
        settings = gw.settings
        return cls(settings.admin_api_key, settings.public_base_url.startswith("https://"))

    def read(self, request: Request) -> dict[str, Any]:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return {}
        try:
            data = self._serializer.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:  # tampered, signed with another admin key, or expired
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self._serializer.dumps(data),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=self.secure
        )


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token_of(request: Request, gw: Gateway) -> str | None:
    token = SessionCodec.of(gw).read(request).get("csrf")
    return token if isinstance(token, str) and token else None


def start_session(
    response: Response, gw: Gateway, kind: Kind, tenant_id: str | None, key_id: str
) -> None:
    """Sign in: a fresh session with a fresh CSRF token (nothing carried over)."""
    data = {"kind": kind, "tenant_id": tenant_id, "key_id": key_id, "csrf": new_csrf_token()}
    SessionCodec.of(gw).write(response, data)


def open_tenant(request: Request, response: Response, gw: Gateway, tenant_id: str) -> None:
    """The operator's session now shows this tenant's console."""
    codec = SessionCodec.of(gw)
    codec.write(response, {**codec.read(request), "tenant_id": tenant_id})


def end_session(response: Response, gw: Gateway) -> None:
    SessionCodec.of(gw).clear(response)


async def _tenant_key_valid(gw: Gateway, tenant: Tenant, key_id: str) -> bool:
    keys = await tenant_service.list_api_keys(gw.db, tenant.id)
    return any(k["id"] == key_id and k["revoked_at"] is None for k in keys)


async def _load_tenant(gw: Gateway, tenant_id: str) -> Tenant | None:
    try:
        return await tenant_service.require_tenant(gw.db, tenant_id)
    except NotFound:
        return None


async def require_console(
    request: Request, gw: Gateway, *, need_tenant: bool = True
) -> ConsoleUser:
    """The signed-in user, checked against the database on every request. Without a valid
    session: SignInRequired. The operator on a tenant page before opening a tenant: a
    redirect to the tenants list (unless `need_tenant` is False)."""
    data = SessionCodec.of(gw).read(request)
    kind, csrf = data.get("kind"), data.get("csrf")
    if kind not in ("tenant", "operator") or not isinstance(csrf, str):
        raise SignInRequired()
    tenant_id = data.get("tenant_id")
    tenant = await _load_tenant(gw, tenant_id) if isinstance(tenant_id, str) else None
    if kind == "tenant":
        key_id = data.get("key_id")
        if (
            tenant is None
            or not isinstance(key_id, str)
            or tenant.status != "active"
            or not await _tenant_key_valid(gw, tenant, key_id)
        ):
            raise SignInRequired("signin.session_ended")
        user = ConsoleUser("tenant", tenant, key_id, csrf, gw)
    else:
        user = ConsoleUser("operator", tenant, OPERATOR_KEY_ID, csrf, gw)
        if tenant is None and need_tenant:
            raise ConsoleRedirect(f"{PREFIX}/tenants")
    request.state.console_user = user
    return user


async def require_operator(request: Request, gw: Gateway) -> ConsoleUser:
    user = await require_console(request, gw, need_tenant=False)
    if not user.is_operator:
        raise ConsoleRedirect(f"{PREFIX}/")
    return user
