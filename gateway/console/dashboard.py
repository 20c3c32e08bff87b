"""The dashboard (`/console/dashboard`, the nav's "Dashboard"): for the signed-in tenant, or
the tenant the operator opened, the message and call KPIs of a period compared with the
period before, the delivery rate day by day, billed / cost / margin by channel, the messages
and calls that lost money, and one contact's timeline.

The page is a frame: each section is an htmx partial it loads, so a slow section never holds
up the others. Every figure comes from the service behind the JSON API's analytics endpoints
(gateway/services/analytics.py) and every period, field and error message is the API's own:
the console formats, in the page's language, what the API would answer.

A period is the last 7, 30 or 90 days (from midnight where the tenant is, to now: the API's
`start=<date>`) or a custom From and To, both days included (the API's `end` is the day after).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.console.dashboard_view import (
    Numbers,
    channel_money,
    delivery_chart,
    kpi_cards,
    timeline_rows,
    unprofitable_rows,
)
from gateway.console.i18n import language_of, translator
from gateway.console.render import is_htmx, render
from gateway.console.session import PREFIX, ConsoleUser, require_console
from gateway.errors import ValidationFailed
from gateway.regions import tenant_region
from gateway.routes.analytics import CommunicationsQuery, PeriodQuery
from gateway.services import analytics
from gateway.validation import validate_model

if TYPE_CHECKING:
    from gateway.wiring import Gateway

PAGE = f"{PREFIX}/dashboard"
PRESETS = (7, 30, 90)
DEFAULT_PRESET = 30
UNPROFITABLE_LIMIT = 20
TIMELINE_LIMIT = 25
NO_FILTERS: dict[str, str | None] = {"channel": None, "message_type": None, "agent": None}
# the console's field names for the API's: From and To (both days included)
_FIELDS = {"start": "from", "end": "to"}


@dataclass(frozen=True)
class Choice:
    """The period asked for: a preset, or custom From and To as typed, resolved by the API's
    rules (`period` is None when they refuse it, with the reasons in `errors`)."""

    preset: int | None
    start: str = ""
    end: str = ""
    period: analytics.Period | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def query(self) -> str:
        if self.preset is not None:
            return urlencode({"period": self.preset})
        return urlencode({"period": "custom", "from": self.start, "to": self.end})


def _errors(exc: ValidationFailed) -> dict[str, str]:
    fields = (exc.details or {}).get("fields", [])
    return {_FIELDS.get(f["field"], f["field"]): f["message"] for f in fields}


def choose_period(params: Mapping[str, str], timezone: str) -> Choice:
    asked = params.get("period", "")
    if asked == "custom" or (not asked and ("from" in params or "to" in params)):
        start, end = params.get("from", "").strip(), params.get("to", "").strip()
        try:
            query = validate_model(PeriodQuery, {"start": start, "end": end})
            until = query.end
            if until is not None and not isinstance(until, datetime):
                until += timedelta(days=1)  # To is included: the API's end is exclusive
            period = analytics.resolve_period(query.start, until, timezone)
        except ValidationFailed as exc:
            return Choice(None, start, end, errors=_errors(exc))
        return Choice(None, start, end, period)
    preset = int(asked) if asked.isdigit() and int(asked) in PRESETS else DEFAULT_PRESET
    today = datetime.now(ZoneInfo(timezone)).date()
    first = today - timedelta(days=preset - 1)
    period = analytics.resolve_period(first, None, timezone)
    return Choice(preset, first.isoformat(), today.isoformat(), period)


@dataclass(frozen=True)
class Section:
    """What every section handler starts from."""

    user: ConsoleUser
    choice: Choice
    numbers: Numbers

    @property
    def period(self) -> analytics.Period:
        assert self.choice.period is not None
        return self.choice.period


async def _user(request: Request) -> ConsoleUser:
    gw: Gateway = request.app.state.gateway
    return await require_console(request, gw)


def _numbers(request: Request, timezone: str) -> Numbers:
    lang = language_of(request)
    return Numbers(lang, translator(lang), ZoneInfo(timezone))


def _to_page(request: Request) -> Response:
    """A section asked for outside htmx (a bookmark, a reload): the page, same period."""
    query = request.url.query
    return RedirectResponse(PAGE + (f"?{query}" if query else ""), status_code=303)


def _period_summary(choice: Choice, numbers: Numbers) -> dict[str, str] | None:
    if choice.period is None:
        return None
    return {
        "current": numbers.span(choice.period),
        "previous": numbers.span(choice.period.previous),
    }


# -- the page -------------------------------------------------------------------------------


async def dashboard_page(request: Request) -> Response:
    user = await _user(request)
    tenant = user.principal.tenant
    choice = choose_period(request.query_params, tenant.timezone)
    numbers = _numbers(request, tenant.timezone)
    return render(
        request,
        "dashboard/page.html",
        {
            "choice": choice,
            "presets": PRESETS,
            "summary": _period_summary(choice, numbers),
            "contact": request.query_params.get("contact", ""),
        },
        status=422 if choice.errors else 200,
    )


async def _section(request: Request) -> Section | Response:
    if not is_htmx(request):
        return _to_page(request)
    user = await _user(request)
    tenant = user.principal.tenant
    choice = choose_period(request.query_params, tenant.timezone)
    numbers = _numbers(request, tenant.timezone)
    if choice.period is None:
        message = "; ".join(f"{name}: {text}" for name, text in choice.errors.items())
        context = {"kind": "error", "message": message}
        return render(request, "partials/alert.html", context, status=422)
    return Section(user, choice, numbers)


# -- the sections ---------------------------------------------------------------------------


async def kpis(request: Request) -> Response:
    section = await _section(request)
    if isinstance(section, Response):
        return section
    db = section.user.db
    messages = await analytics.message_metrics(db, section.period, NO_FILTERS)
    calls = await analytics.call_metrics(db, section.period)
    cards = kpi_cards(messages, calls, section.numbers)
    return render(request, "dashboard/kpis.html", cards)


async def delivery(request: Request) -> Response:
    section = await _section(request)
    if isinstance(section, Response):
        return section
    tenant = section.user.principal.tenant
    days = await analytics.daily_delivery(section.user.db, section.period, tenant.timezone)
    return render(request, "dashboard/delivery.html", delivery_chart(days, section.numbers))


async def money(request: Request) -> Response:
    section = await _section(request)
    if isinstance(section, Response):
        return section
    db = section.user.db
    channels = await analytics.channel_breakdown(db, section.period)
    calls = await analytics.call_metrics(db, section.period)
    context = channel_money(channels, calls, section.numbers)
    return render(request, "dashboard/money.html", context)


async def unprofitable(request: Request) -> Response:
    section = await _section(request)
    if isinstance(section, Response):
        return section
    report = await analytics.unprofitable(section.user.db, section.period, UNPROFITABLE_LIMIT)
    context = unprofitable_rows(report, section.numbers)
    return render(request, "dashboard/unprofitable.html", context)


async def contact(request: Request) -> Response:
    """One contact's timeline (the API's `GET /api/communications`), newest first; with a
    cursor, the next rows only."""
    if not is_htmx(request):
        return _to_page(request)
    user = await _user(request)
    tenant = user.principal.tenant
    numbers = _numbers(request, tenant.timezone)
    asked = request.query_params.get("contact", "")
    cursor = request.query_params.get("cursor") or None
    context: dict[str, Any] = {"contact": asked, "error": None, "page": None, "cursor": cursor}
    if not asked.strip():
        return render(request, "dashboard/contact.html", context)
    try:
        query = validate_model(
            CommunicationsQuery, {"contact": asked, "limit": TIMELINE_LIMIT, "cursor": cursor}
        )
        page = await analytics.timeline(
            user.db, query.contact, query.limit, query.cursor, region=tenant_region(tenant)
        )
    except ValidationFailed as exc:
        context["error"] = "; ".join(_errors(exc).values())
        return render(request, "dashboard/contact.html", context, status=422)
    context["page"] = timeline_rows(page, numbers)
    template = "dashboard/contact_rows.html" if cursor else "dashboard/contact.html"
    return render(request, template, context)


def _route(path: str, endpoint: Any, name: str) -> Route:
    return Route(f"{PAGE}{path}", endpoint, methods=["GET"], name=name)


ROUTES = [
    _route("", dashboard_page, "console_dashboard"),
    _route("/kpis", kpis, "console_dashboard_kpis"),
    _route("/delivery", delivery, "console_dashboard_delivery"),
    _route("/money", money, "console_dashboard_money"),
    _route("/unprofitable", unprofitable, "console_dashboard_unprofitable"),
    _route("/contact", contact, "console_dashboard_contact"),
]
