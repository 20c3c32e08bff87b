"""One page per channel: its settings form, its on/off switch, its test, and for the operator
the channel's operator-only fields.

Each action calls the service the API's handler calls (`gw.channels.update` for `PUT
/api/channels/{type}/config`, `toggle`, `gw.channel_tests.run`, the operator's
`update_operator_fields`) inside the tenant's validation context, so a national number is
read in the tenant's country and every error is the API's own: a 422 puts each message next
to the input it names, a 409 or 429 shows at the top of the section. An htmx request gets the
section back (and the status panel, out of band, since a save can change what is missing);
a plain form post gets the whole page, with the same status code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.console import channel_forms as forms
from gateway.console.form_body import read_form
from gateway.console.guides import EMAIL_PRESETS, FORWARDING
from gateway.console.render import is_htmx, render
from gateway.console.session import ConsoleUser, require_console
from gateway.console.sms_preview import preview, price_per_segment
from gateway.errors import ApiError, Conflict, Forbidden, RateLimited, ValidationFailed
from gateway.regions import tenant_region
from gateway.routes.channels import ChannelTestBody, ToggleBody
from gateway.services import tenants as tenant_service
from gateway.services.channel_config import spec_for
from gateway.validation import validate_model, validation_context

if TYPE_CHECKING:
    from gateway.wiring import Gateway


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


@contextmanager
def tenant_rules(user: ConsoleUser) -> Iterator[None]:
    """What the API's router sets around a tenant's request: its region for phone numbers."""
    with validation_context(region=tenant_region(user.principal.tenant)):
        yield


def api_message(error: ApiError) -> dict[str, Any]:
    """An API error as the page shows it: its message, code and details (what is missing)."""
    retry = error.headers.get("Retry-After")
    return {
        "status": error.status,
        "code": error.code,
        "message": error.message,
        "missing": list(error.details.get("missing") or []),
        "retry_after": retry,
    }


class ChannelPage:
    """Everything one channel's page shows, built from the API's view of the channel."""

    def __init__(self, request: Request, user: ConsoleUser, channel: str) -> None:
        self.request = request
        self.user = user
        self.gw = _gateway(request)
        self.channel = spec_for(channel).channel
        self.sms_price = 0.0
        self.context: dict[str, Any] = {
            "channel": self.channel,
            "errors": {},
            "form_error": None,
            "saved": False,
            "status_error": None,
            "test_result": None,
            "test_error": None,
            "test_errors": {},
            "test_to": "",
            "operator_errors": {},
            "operator_error": None,
            "operator_saved": False,
        }

    async def load(self) -> ChannelPage:
        state = await self.gw.channels.load(self.user.db, self.channel)
        self.show(self.gw.channels.view(state))
        if self.channel == "sms":
            self.sms_price = await price_per_segment(self.gw, self.user)
        return self

    def show(self, view: dict[str, Any], *, keep_form: bool = False) -> None:
        context = self.context
        context["view"] = view
        if not keep_form:
            context["values"] = forms.values_from_view(self.channel, view)
        if self.channel in forms.OPERATOR_INPUTS and "operator_values" not in context:
            context["operator_values"] = forms.values_from_view(self.channel, view, operator=True)

    def response(self, partial: str | None, status: int = 200) -> Response:
        context = {**self.context, **self._extras()}
        if partial is not None and is_htmx(self.request):
            return render(self.request, partial, context, status=status)
        return render(self.request, "channels/page.html", context, status=status)

    def _extras(self) -> dict[str, Any]:
        settings = self.gw.settings
        tenant = self.user.principal.tenant
        rows = self.context["values"].rows if self.channel == "sms" else []
        return {
            "previews": [preview(row["text"], self.sms_price) for row in rows],
            "inputs": forms.TENANT_INPUTS[self.channel],
            "operator_inputs": forms.OPERATOR_INPUTS.get(self.channel, ()),
            "weekdays": forms.WEEKDAYS,
            "forwarding": FORWARDING,
            "shared_number": settings.typed.twilio_phone_number,
            "presets": EMAIL_PRESETS,
            "webhook_url": f"{settings.public_base_url}/webhooks/whatsapp/{tenant.slug}",
            "tenant": tenant,
        }


async def channel_page(request: Request) -> Response:
    user = await require_console(request, _gateway(request))
    page = await ChannelPage(request, user, request.path_params["channel"]).load()
    return page.response(None)


async def save_settings(request: Request) -> Response:
    gw = _gateway(request)
    user = await require_console(request, gw)
    page = await ChannelPage(request, user, request.path_params["channel"]).load()
    form = await read_form(request)
    values = forms.values_from_form(page.channel, form)
    patch = forms.tenant_patch(page.channel, values, form, page.context["view"]["settings"])
    try:
        with tenant_rules(user):
            view = await gw.channels.update(user.db, page.channel, patch)
    except ValidationFailed as exc:
        page.context["values"] = values
        page.context["errors"] = forms.errors_by_input(
            exc.details["fields"], page.channel, values.rows
        )
        return page.response("channels/form_response.html", 422)
    except Conflict as exc:
        page.context["values"] = values
        page.context["form_error"] = api_message(exc)
        return page.response("channels/form_response.html", 409)
    page.show(view)
    page.context["saved"] = True
    return page.response("channels/form_response.html")


async def toggle_channel(request: Request) -> Response:
    gw = _gateway(request)
    user = await require_console(request, gw)
    page = await ChannelPage(request, user, request.path_params["channel"]).load()
    form = await read_form(request)
    try:
        body = validate_model(ToggleBody, {"enabled": form.get("enabled") == "true"})
        view = await gw.channels.toggle(user.db, page.channel, body.enabled)
    except Conflict as exc:
        page.context["status_error"] = api_message(exc)
        return page.response("channels/status.html", 409)
    page.show(view)
    return page.response("channels/status.html")


async def test_channel(request: Request) -> Response:
    gw = _gateway(request)
    user = await require_console(request, gw)
    page = await ChannelPage(request, user, request.path_params["channel"]).load()
    form = await read_form(request)
    to = str(form.get("to") or "").strip()
    page.context["test_to"] = to
    try:
        with tenant_rules(user):
            body = validate_model(ChannelTestBody, {"channel": page.channel, "to": to})
            result = await gw.channel_tests.run(user.principal, body.channel, body.to)
    except ValidationFailed as exc:
        page.context["test_errors"] = {
            "to": [f["message"] for f in exc.details["fields"] if f["field"] in ("to", "body")]
        }
        return page.response("channels/test.html", 422)
    except (Conflict, RateLimited) as exc:
        page.context["test_error"] = api_message(exc)
        return page.response("channels/test.html", exc.status)
    page.context["test_result"] = result
    # a failed test is kept as the channel's last error: the status panel shows it
    page.show(await _fresh_view(gw, user, page.channel), keep_form=True)
    return page.response("channels/test_response.html")


async def _fresh_view(gw: Gateway, user: ConsoleUser, channel: str) -> dict[str, Any]:
    return gw.channels.view(await gw.channels.load(user.db, channel))


async def save_operator_settings(request: Request) -> Response:
    gw = _gateway(request)
    user = await require_console(request, gw)
    page = await ChannelPage(request, user, request.path_params["channel"]).load()
    if not user.is_operator or page.channel not in forms.OPERATOR_INPUTS:
        raise Forbidden("Only the operator can change these settings", code="operator_only")
    form = await read_form(request)
    values = forms.values_from_form(page.channel, form, operator=True)
    page.context["operator_values"] = values
    try:
        patch = forms.operator_patch(page.channel, values)
        view = await tenant_service.update_operator_fields(
            gw.db, gw.channels, user.principal.tenant, page.channel, patch
        )
    except ValidationFailed as exc:
        page.context["operator_errors"] = forms.errors_by_input(exc.details["fields"], page.channel)
        return page.response("channels/operator_response.html", 422)
    except Conflict as exc:
        page.context["operator_error"] = api_message(exc)
        return page.response("channels/operator_response.html", 409)
    del page.context["operator_values"]
    page.show(view)
    page.context["operator_saved"] = True
    return page.response("channels/operator_response.html")
