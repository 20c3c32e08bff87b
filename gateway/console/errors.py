"""How the console answers what went wrong: as pages, never as the API's JSON.

An API error a page does not handle itself (an unknown channel, unreadable credentials…)
becomes an error page with the API's status and message; no session means the sign-in page;
for an htmx request a redirect is `HX-Redirect`, which htmx follows as a page load.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.console.i18n import language_of, translator
from gateway.console.render import is_htmx, render
from gateway.console.session import PREFIX, ConsoleRedirect, SignInRequired, end_session
from gateway.errors import ApiError, concurrent_change
from gateway.store.engine import IntegrityError


def redirect(request: Request, location: str) -> Response:
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    location = f"{PREFIX}/sign-in"
    if exc.reason:
        location += "?" + urlencode({"reason": exc.reason})
    response = redirect(request, location)
    if exc.reason:
        end_session(response, request.app.state.gateway)
    return response


async def console_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleRedirect)
    return redirect(request, exc.location)


def error_page(request: Request, status: int, message: str) -> Response:
    template = "partials/alert.html" if is_htmx(request) else "error.html"
    return render(
        request,
        template,
        {"status": status, "message": message, "kind": "error"},
        status=status,
    )


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_page(request, exc.status, exc.message)


async def integrity_error(request: Request, exc: Exception) -> Response:
    """A write the page's checks let through, refused by a constraint: a race (the tenant
    was deleted meanwhile…), shown as the API's 409."""
    assert isinstance(exc, IntegrityError)
    error = concurrent_change()
    return error_page(request, error.status, error.message)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    t = translator(language_of(request))
    key = {404: "error.not_found", 405: "error.method_not_allowed"}.get(exc.status_code)
    return error_page(request, exc.status_code, t(key) if key else str(exc.detail))


def csrf_refused(request: Request) -> Response:
    return error_page(request, 403, translator(language_of(request))("error.csrf"))


EXCEPTION_HANDLERS = {
    SignInRequired: sign_in_required,
    ConsoleRedirect: console_redirect,
    ApiError: api_error,
    IntegrityError: integrity_error,
    HTTPException: http_error,
}
