"""Analytics: the product's get_sms_metrics for every channel, call metrics, one contact's
timeline, the items that lost money, and the operator's per-tenant totals.

Definitions, for outbound messages created in [start, end):
  delivered = status delivered or read; failed = failed or undelivered;
  in_flight = queued, sending or sent; canceled = canceled.
  Rates are percentages with 2 decimals, 0 when there is nothing to divide by. Money (EUR) has
  4 decimals. Averages of money are over the messages that have the value (a message whose
  provider price has not arrived yet has no cost and no margin), so is margin_percentage:
  total margin / revenue of the messages whose margin is known * 100, null when that revenue
  is 0. Averages of characters and seconds have 2 decimals and are null when nothing has the
  value. Figures are rounded half up, from exact decimal arithmetic.
  A comparison is current - previous, and that change as a percentage of |previous| (null when
  previous is 0 or either side is null), computed from the rounded figures shown.

Message figures are read through `gateway.services.rollups`: per-hour and per-day rollups
where they cover the period, the messages themselves elsewhere; the answer is the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from gateway.errors import ValidationFailed
from gateway.ids import iso
from gateway.services import rollups
from gateway.store import analytics as store
from gateway.store.engine import Engine, Row
from gateway.store.paging import decode_cursor, encode_cursor
from gateway.store.rollups import FIGURES
from gateway.store.tenant_scope import TenantDB
from gateway.validation import normalize_e164, normalize_email

DEFAULT_DAYS = 30
MAX_DAYS = 366
CONTENT_CHARS = 500

# each scalar figure and its decimals (0: a count); comparisons cover exactly these
MESSAGE_FIGURES = dict.fromkeys(
    ("total", "delivered", "failed", "in_flight", "canceled", "total_segments"), 0
)
MESSAGE_FIGURES |= dict.fromkeys(("delivery_rate", "failure_rate", "margin_percentage"), 2)
MESSAGE_FIGURES |= dict.fromkeys(("total_revenue", "total_cost", "total_margin"), 4)
MESSAGE_FIGURES |= dict.fromkeys(
    ("avg_revenue_per_message", "avg_cost_per_message", "avg_margin_per_message"), 4
)
MESSAGE_FIGURES |= {"avg_characters": 2, "min_characters": 0, "max_characters": 0}
MESSAGE_FIGURES |= dict.fromkeys(("unique_recipients", "linked_to_calls"), 0)
MESSAGE_FIGURES |= {"call_linkage_rate": 2, "avg_delivery_time_seconds": 2}
CALL_FIGURES = dict.fromkeys(("calls", "bridged", "fallbacks"), 0)
CALL_FIGURES |= {"avg_duration_seconds": 2, "total_duration_seconds": 2}
CALL_FIGURES |= {"appointments_booked": 0, "booking_conversion": 2}
CALL_FIGURES |= {"prospects_qualified": 0, "tickets_created": 0}
CALL_FIGURES |= dict.fromkeys(("total_cost", "total_revenue", "total_margin"), 4)
_OPERATOR_MONEY = ("revenue", "cost", "margin", "call_revenue", "call_cost", "call_margin")


# -- numbers --------------------------------------------------------------------------------


def _dec(value: float | int | Decimal | None) -> Decimal:
    # through str() so a float sum such as 0.21000000000000002 is read as the decimal it shows
    return Decimal(str(value or 0))


def _round(value: Decimal | float | int, places: int) -> float | int:
    if places == 0:
        return int(value)
    return float(_dec(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _ratio(part: Decimal | float | int, whole: Decimal | float | int) -> float | None:
    """part / whole as a percentage with 2 decimals; None when whole is 0."""
    if _dec(whole) == 0:
        return None
    return float(_round(_dec(part) * 100 / _dec(whole), 2))


def _rate(part: Decimal | float | int, whole: Decimal | float | int) -> float:
    return _ratio(part, whole) or 0.0


def _average(total: Decimal | float | int, count: int, places: int) -> float | None:
    if not count:
        return None
    return float(_round(_dec(total) / count, places))


def _money(value: Decimal | float | int | None) -> float:
    return float(_round(_dec(value), 4))


def compare(
    current: Mapping[str, Any], previous: Mapping[str, Any], figures: Mapping[str, int]
) -> dict[str, dict[str, float | int | None]]:
    result: dict[str, dict[str, float | int | None]] = {}
    for name, places in figures.items():
        now, before = current[name], previous[name]
        if now is None or before is None:
            result[name] = {"absolute": None, "percentage": None}
            continue
        change = _dec(now) - _dec(before)
        result[name] = {
            "absolute": _round(change, places),
            "percentage": _ratio(change, abs(before)),
        }
    return result


# -- periods --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end), UTC, to the millisecond (the precision of stored timestamps)."""

    start: datetime
    end: datetime

    @property
    def previous(self) -> Period:
        return Period(self.start - (self.end - self.start), self.start)

    def public(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}

    def window(self) -> store.Window:
        return store.Window(iso(self.previous.start), iso(self.start), iso(self.end))


def _instant(value: date, zone: ZoneInfo) -> datetime:
    # a date is midnight at the start of that day where the tenant is
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0), tzinfo=zone)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def resolve_period(
    start: date | None, end: date | None, timezone: str = "UTC", now: datetime | None = None
) -> Period:
    """The period asked for: dates are midnight in `timezone`, end defaults to now, start to
    DEFAULT_DAYS before end."""
    zone = ZoneInfo(timezone)
    until = _instant(end, zone) if end is not None else _instant(now or datetime.now(UTC), zone)
    since = _instant(start, zone) if start is not None else until - timedelta(days=DEFAULT_DAYS)
    if since >= until:
        raise ValidationFailed.one("start", f"must be before end ({iso(until)})")
    if until - since > timedelta(days=MAX_DAYS):
        raise ValidationFailed.one("start", f"the period may span at most {MAX_DAYS} days")
    return Period(since, until)


def _by_period(rows: list[Row]) -> dict[str, Mapping[str, Any]]:
    return {row["period"]: dict(row) for row in rows}


# -- messages -------------------------------------------------------------------------------


class _Empty(dict[str, Any]):
    """An empty period: SQL returns no group for it, so every count and sum is 0."""

    def __missing__(self, key: str) -> int:
        return 0


_NO_MESSAGES = _Empty(min_characters=None, max_characters=None)


def _message_figures(row: Mapping[str, Any]) -> dict[str, Any]:
    total = row["total"]
    revenue, margin = _money(row["revenue"]), _money(row["margin"])
    return {
        "total": total,
        "delivered": row["delivered"],
        "failed": row["failed"],
        "in_flight": row["in_flight"],
        "canceled": row["canceled"],
        "delivery_rate": _rate(row["delivered"], total),
        "failure_rate": _rate(row["failed"], total),
        "total_revenue": revenue,
        "total_cost": _money(row["cost"]),
        "total_margin": margin,
        "margin_percentage": _ratio(margin, _money(row["priced_revenue"])),
        "avg_revenue_per_message": _average(row["revenue"], row["with_revenue"], 4),
        "avg_cost_per_message": _average(row["cost"], row["with_cost"], 4),
        "avg_margin_per_message": _average(row["margin"], row["with_margin"], 4),
        "total_segments": int(row["segments"]),
        "avg_characters": _average(row["characters"], row["with_characters"], 2),
        "min_characters": row["min_characters"],
        "max_characters": row["max_characters"],
        "unique_recipients": row["unique_recipients"],
        "linked_to_calls": row["linked_to_calls"],
        "call_linkage_rate": _rate(row["linked_to_calls"], total),
        "avg_delivery_time_seconds": _average(
            row["delivery_seconds"], row["with_delivery_time"], 2
        ),
    }


def _breakdown(rows: Sequence[Mapping[str, Any]], period: str, key: str) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["period"] != period:
            continue
        group = groups.setdefault(
            row[key],
            {"count": 0, "delivered": 0} | dict.fromkeys(("revenue", "cost", "margin"), Decimal(0)),
        )
        group["count"] += row["count"]
        group["delivered"] += row["delivered"]
        for money in ("revenue", "cost", "margin"):
            group[money] += _dec(row[money])
    return [
        {
            key: name,
            "count": g["count"],
            "delivered": g["delivered"],
            "delivery_rate": _rate(g["delivered"], g["count"]),
            "revenue": _money(g["revenue"]),
            "cost": _money(g["cost"]),
            "margin": _money(g["margin"]),
        }
        for name, g in sorted(groups.items())
    ]


_ALL_FIGURES = [figure.name for figure in FIGURES]
_BREAKDOWN_FIGURES = ("total", "delivered", "revenue", "cost", "margin")


def _totals_row(figures: Mapping[str, Any], unique_recipients: int | None) -> dict[str, Any]:
    """The fold of a period's rollup figures, as `_message_figures` reads it."""
    row = dict(figures) | {"unique_recipients": unique_recipients}
    row["delivery_seconds"] = _dec(figures["delivery_ms"]) / 1000
    return row


def _breakdown_rows(
    period: str, groups: Mapping[tuple[Any, ...], Mapping[str, Any]]
) -> list[dict[str, Any]]:
    return [
        {"period": period, "channel": channel, "message_type": message_type}
        | {"count": g["total"], "delivered": g["delivered"]}
        | {name: g[name] for name in ("revenue", "cost", "margin")}
        for (channel, message_type), g in groups.items()
    ]


def _spans(period: Period) -> list[tuple[datetime, datetime]]:
    return [(period.start, period.end), (period.previous.start, period.previous.end)]


async def message_metrics(
    tdb: TenantDB, period: Period, filters: dict[str, str | None]
) -> dict[str, Any]:
    spans = _spans(period)
    readings = await rollups.readings(
        tdb, spans, _ALL_FIGURES, filters, ("channel", "message_type"), recipients=True
    )
    result: dict[str, Any] = {
        "period": period.public(),
        "previous": period.previous.public(),
        "filters": filters,
    }
    for reading, name in zip(readings, ("current", "previous"), strict=True):
        figures = _message_figures(_totals_row(reading.totals, reading.unique_recipients))
        breakdown = _breakdown_rows(name, reading.groups)
        figures["by_message_type"] = _breakdown(breakdown, name, "message_type")
        figures["by_channel"] = _breakdown(breakdown, name, "channel")
        result[f"{name}_period"] = figures
    result["comparison"] = compare(
        result["current_period"], result["previous_period"], MESSAGE_FIGURES
    )
    return result


async def channel_breakdown(tdb: TenantDB, period: Period) -> list[dict[str, Any]]:
    """The `by_channel` of `message_metrics`' current period alone: no previous period, no
    totals, a quarter of the work where only the money by channel is shown."""
    spans = [(period.start, period.end)]
    (groups,) = await rollups.groups(
        tdb, spans, _BREAKDOWN_FIGURES, {}, ("channel", "message_type")
    )
    return _breakdown(_breakdown_rows("current", groups), "current", "channel")


# -- a period day by day ----------------------------------------------------------------------


def period_days(period: Period, timezone: str) -> list[tuple[date, datetime, datetime]]:
    """The days (midnight to midnight in `timezone`) a period covers, the first and the last
    clipped to the period: (the local date, start, end)."""
    zone = ZoneInfo(timezone)
    day = period.start.astimezone(zone).date()
    start, days = period.start, []
    while start < period.end:
        end = min(_instant(day + timedelta(days=1), zone), period.end)
        days.append((day, start, end))
        day, start = day + timedelta(days=1), end
    return days


async def daily_delivery(tdb: TenantDB, period: Period, timezone: str) -> list[dict[str, Any]]:
    """Outbound messages of each day of the period, as `message_metrics` counts them:
    total, delivered, failed, and the delivery rate (null on a day without messages)."""
    days = period_days(period, timezone)
    counts = await rollups.counts(tdb, [(start, end) for _, start, end in days], {})
    series = []
    for (day, start, end), row in zip(days, counts, strict=True):
        series.append(
            {
                "day": day.isoformat(),
                "start": iso(start),
                "end": iso(end),
                "total": row["total"],
                "delivered": int(row["delivered"]),
                "failed": int(row["failed"]),
                "delivery_rate": _ratio(row["delivered"], row["total"]),
            }
        )
    return series


# -- calls ----------------------------------------------------------------------------------

_NO_CALLS = _Empty()


def _call_figures(row: Mapping[str, Any], produced: Mapping[str, int]) -> dict[str, Any]:
    booked = produced.get("appointments", 0)
    return {
        "calls": row["calls"],
        "bridged": row["bridged"],
        "fallbacks": row["fallbacks"],
        "avg_duration_seconds": _average(row["duration"], row["with_duration"], 2),
        "total_duration_seconds": float(_round(row["duration"], 2)),
        "appointments_booked": booked,
        "booking_conversion": _rate(booked, row["bridged"]),
        "prospects_qualified": produced.get("prospects", 0),
        "tickets_created": produced.get("tickets", 0),
        "total_cost": _money(row["cost"]),
        "total_revenue": _money(row["revenue"]),
        "total_margin": _money(row["margin"]),
    }


async def call_metrics(tdb: TenantDB, period: Period) -> dict[str, Any]:
    window = period.window()
    totals = _by_period(await store.call_totals(tdb, window))
    produced: dict[str, dict[str, int]] = {"current": {}, "previous": {}}
    for row in await store.call_outcomes(tdb, window):
        produced[row["period"]][row["kind"]] = row["n"]
    result: dict[str, Any] = {"period": period.public(), "previous": period.previous.public()}
    for name in ("current", "previous"):
        result[f"{name}_period"] = _call_figures(totals.get(name) or _NO_CALLS, produced[name])
    result["comparison"] = compare(
        result["current_period"], result["previous_period"], CALL_FIGURES
    )
    return result


# -- one contact's timeline -------------------------------------------------------------------


def contact_forms(contact: str, region: str | None = None) -> tuple[list[str], bool]:
    """The stored forms a contact may have, and whether it is a phone number. An email
    address is looked up lowercased and as normalised (domain lowercased, local part kept),
    since senders store it the second way. A national number is read in `region`."""
    raw = contact.strip()
    try:
        if "@" in raw:
            normalised = normalize_email(raw)
            return list(dict.fromkeys((normalised.lower(), normalised))), False
        return [normalize_e164(raw, region)], True
    except ValueError as exc:
        raise ValidationFailed.one(
            "contact", f"must be a phone number or an email address: {exc}"
        ) from None


def _content(row: Row) -> str | None:
    if row["type"] != "message":
        return None
    parts = [part for part in (row["subject"], row["body"]) if part]
    return "\n".join(parts)[:CONTENT_CHARS] if parts else None


async def timeline(
    tdb: TenantDB, contact: str, limit: int, cursor: str | None, region: str | None = None
) -> dict[str, Any]:
    forms, is_phone = contact_forms(contact, region)
    before = decode_cursor(cursor, 2) if cursor else None
    rows = await store.timeline(tdb, forms, limit + 1, before, calls=is_phone)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        {
            "type": row["type"],
            "id": row["id"],
            "time": row["time"],
            "channel": row["channel"],
            "direction": row["direction"],
            "status": row["status"],
            "cost": None if row["cost"] is None else _money(row["cost"]),
            "duration_seconds": row["duration_seconds"],
            "content": _content(row),
        }
        for row in rows
    ]
    next_cursor = encode_cursor(rows[-1]["time"], rows[-1]["id"]) if more else None
    return {"contact": forms[0], "items": items, "next_cursor": next_cursor}


# -- profitability ----------------------------------------------------------------------------


async def unprofitable(tdb: TenantDB, period: Period, limit: int) -> dict[str, Any]:
    start, end = iso(period.start), iso(period.end)
    rows = await store.unprofitable(tdb, start, end, limit)
    figures = ("total", "with_margin", "losing", "loss")
    spans = [(period.start, period.end)]
    (by_channel,) = await rollups.groups(tdb, spans, figures, {}, ("channel",))
    shares: list[Mapping[str, Any] | Row] = [
        {"channel": channel, "priced": g["with_margin"], "losing": g["losing"], "loss": g["loss"]}
        for (channel,), g in by_channel.items()
    ]
    shares += await store.call_loss_share(tdb, start, end)
    items = [
        {
            "type": row["type"],
            "id": row["id"],
            "time": row["time"],
            "channel": row["channel"],
            "contact": row["contact"],
            "revenue": _money(row["revenue"]),
            "cost": _money(row["cost"]),
            "margin": _money(row["margin"]),
            "margin_percentage": _ratio(_money(row["margin"]), _money(row["revenue"])),
            "num_segments": row["num_segments"],
            "duration_seconds": row["duration_seconds"],
        }
        for row in rows
    ]
    loss_share = [
        {
            "channel": row["channel"],
            "priced": row["priced"],
            "losing": row["losing"],
            "loss_share": _rate(row["losing"], row["priced"]),
            "total_loss": _money(row["loss"]),
        }
        for row in sorted(shares, key=lambda r: str(r["channel"]))
        if row["priced"]
    ]
    return {"period": period.public(), "items": items, "loss_share_by_channel": loss_share}


# -- operator ---------------------------------------------------------------------------------


async def operator_metrics(
    db: Engine, period: Period, sort: str, order: str, limit: int
) -> dict[str, Any]:
    message_rows, call_rows = await store.operator_totals(db, iso(period.start), iso(period.end))
    calls = {row["tenant_id"]: row for row in call_rows}
    tenants = []
    for row in message_rows:
        # a tenant deleted between the two reads has no calls row: it had none
        call = calls.get(row["tenant_id"]) or _Empty()
        tenant: dict[str, Any] = {
            "tenant_id": row["tenant_id"],
            "slug": row["slug"],
            "name": row["name"],
            "messages": row["messages"],
            "calls": call["calls"],
        }
        tenant |= {name: _money(row[name]) for name in ("revenue", "cost", "margin")}
        tenant |= {
            name: _money(call[name]) for name in ("call_revenue", "call_cost", "call_margin")
        }
        tenant["total_revenue"] = _money(_dec(tenant["revenue"]) + _dec(tenant["call_revenue"]))
        tenant["total_margin"] = _money(_dec(tenant["margin"]) + _dec(tenant["call_margin"]))
        tenants.append(tenant)
    # slug first, then the sort key: the sort is stable, so ties stay in slug order
    tenants.sort(key=lambda t: str(t["slug"]))
    tenants.sort(key=lambda t: float(t[sort]), reverse=order == "desc")
    totals: dict[str, Any] = {
        "tenants": len(tenants),
        "messages": sum(t["messages"] for t in tenants),
        "calls": sum(t["calls"] for t in tenants),
    }
    for name in (*_OPERATOR_MONEY, "total_revenue", "total_margin"):
        totals[name] = _money(sum((_dec(t[name]) for t in tenants), Decimal(0)))
    return {
        "period": period.public(),
        "sort": sort,
        "order": order,
        "totals": totals,
        "tenants": tenants[:limit],
    }
