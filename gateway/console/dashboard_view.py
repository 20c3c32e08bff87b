"""What the dashboard shows, from what the analytics services answer: numbers and dates in
the page's language, the KPI cards with their change, the charts and the tables beside them.

Nothing here computes a figure the API does not give, except the sums and the average line a
table or a chart needs (the money of all channels, the period's delivery rate drawn across
the daily chart), with the API's rounding (half up, from exact decimals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from gateway.console.charts import BarGroup, LinePoint, Tick, bar_chart, line_chart
from gateway.console.i18n import Translate, format_money, format_number
from gateway.ids import parse_iso
from gateway.services.analytics import Period

NONE = "—"


def _decimal(value: float | int | None) -> Decimal:
    return Decimal(str(value or 0))


def _half_up(value: Decimal, places: int) -> float:
    return float(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Numbers:
    """Numbers, money, durations and dates as the page's language writes them; dates are
    where the tenant is."""

    lang: str
    t: Translate
    zone: ZoneInfo

    def count(self, value: float | int) -> str:
        return format_number(value, self.lang)

    def money(self, value: float | int | None, digits: int = 2) -> str:
        if value is None:
            return NONE
        shown = _half_up(_decimal(value), digits)  # as the API rounds, not as floats do
        amount = format_money(abs(shown), self.lang, digits)
        return f"-{amount}" if shown < 0 else amount

    def percent(self, value: float | None, digits: int = 2, *, signed: bool = False) -> str:
        if value is None:
            return NONE
        text = format_number(abs(value), self.lang, digits)
        sign = "-" if value < 0 else ("+" if signed and value > 0 else "")
        return f"{sign}{text}\u202f%" if self.lang == "fr" else f"{sign}{text}%"

    def points(self, value: float) -> str:
        text = format_number(abs(value), self.lang, 2)
        sign = "-" if value < 0 else "+" if value > 0 else ""
        return self.t("dashboard.points", value=f"{sign}{text}")

    def duration(self, seconds: float | None) -> str:
        if seconds is None:
            return NONE
        whole = int(Decimal(str(seconds)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        hours, rest = divmod(whole, 3600)
        minutes, secs = divmod(rest, 60)
        if hours:
            return f"{hours}\u00a0h\u00a0{minutes:02d}\u00a0min"
        if minutes:
            return f"{minutes}\u00a0min\u00a0{secs:02d}\u00a0s"
        return f"{secs}\u00a0s"

    def _month(self, day: date) -> str:
        return self.t("dashboard.months").split()[day.month - 1]

    def day(self, day: date) -> str:
        return f"{day.day}\u00a0{self._month(day)}"

    def date(self, day: date) -> str:
        return f"{day.day}\u00a0{self._month(day)} {day.year}"

    def moment(self, value: str | datetime) -> str:
        local = (parse_iso(value) if isinstance(value, str) else value).astimezone(self.zone)
        return f"{self.date(local.date())} {local:%H:%M}"

    def span(self, period: Period) -> str:
        """The days a period covers: a bound at midnight shows as its day, another with its
        time; the end is exclusive, so a midnight end shows the day before."""
        start, end = period.start.astimezone(self.zone), period.end.astimezone(self.zone)
        first = self.date(start.date()) if start.time() == time(0) else self.moment(start)
        if end.time() == time(0):
            last = self.date(end.date() - timedelta(days=1))
        else:
            last = self.moment(end)
        return f"{first} \u2013 {last}"


# -- KPI cards ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    key: str  # the API's figure
    label: str
    value: str
    detail: str  # a related figure, on the line below
    previous: str
    change: str  # "+12.50%", "-1.20 pts", "new", "no change"
    trend: str  # up, down, flat


# (figure, label, how it shows, the line below: its text, its figure, how that shows); a rate
# changes by percentage points, any other figure by a percentage of the previous value
_MESSAGE_CARDS = (
    ("total", "messages", "count", "segments", "total_segments", "count"),
    ("delivery_rate", "delivery_rate", "rate", "delivered", "delivered", "count"),
    ("failure_rate", "failure_rate", "rate", "failed", "failed", "count"),
    ("total_revenue", "billed", "money", "per_message", "avg_revenue_per_message", "unit"),
    ("total_cost", "cost", "money", "per_message", "avg_cost_per_message", "unit"),
    ("total_margin", "margin", "money", "of_billed", "margin_percentage", "rate"),
)
_CALL_CARDS = (
    ("calls", "calls", "count", "bridged", "bridged", "count"),
    ("appointments_booked", "appointments", "count", "conversion", "booking_conversion", "rate"),
    ("total_duration_seconds", "duration", "duration", "average", "avg_duration_seconds",
     "duration"),
    ("total_margin", "call_margin", "money", "billed_amount", "total_revenue", "money"),
)  # fmt: skip


def _show(numbers: Numbers, kind: str, value: Any) -> str:
    if kind == "count":
        return numbers.count(value)
    if kind == "rate":
        return numbers.percent(value)
    if kind == "duration":
        return numbers.duration(value)
    return numbers.money(value, 4 if kind == "unit" else 2)


def _change(numbers: Numbers, compared: Mapping[str, Any], rate: bool) -> tuple[str, str]:
    absolute, percentage = compared["absolute"], compared["percentage"]
    if absolute is None:
        return NONE, "flat"
    trend = "up" if absolute > 0 else "down" if absolute < 0 else "flat"
    if absolute == 0:
        return numbers.t("dashboard.change.none"), trend
    if rate:
        return numbers.points(absolute), trend
    if percentage is None:  # from nothing to something
        return numbers.t("dashboard.change.new"), trend
    return numbers.percent(percentage, signed=True), trend


def _cards(report: Mapping[str, Any], specs: Sequence[tuple[str, ...]], n: Numbers) -> list[Kpi]:
    current, previous = report["current_period"], report["previous_period"]
    cards = []
    for key, label, kind, detail, detail_key, detail_kind in specs:
        change, trend = _change(n, report["comparison"][key], kind == "rate")
        cards.append(
            Kpi(
                key=key,
                label=n.t(f"dashboard.kpi.{label}"),
                value=_show(n, kind, current[key]),
                detail=n.t(
                    f"dashboard.kpi.{detail}", value=_show(n, detail_kind, current[detail_key])
                ),
                previous=_show(n, kind, previous[key]),
                change=change,
                trend=trend,
            )
        )
    return cards


def kpi_cards(
    messages: Mapping[str, Any], calls: Mapping[str, Any], numbers: Numbers
) -> dict[str, list[Kpi]]:
    return {
        "messages": _cards(messages, _MESSAGE_CARDS, numbers),
        "calls": _cards(calls, _CALL_CARDS, numbers),
    }


# -- the delivery rate, day by day ----------------------------------------------------------

_RATE_TICKS = (0, 25, 50, 75, 100)


def delivery_chart(days: Sequence[Mapping[str, Any]], numbers: Numbers) -> dict[str, Any]:
    t, n = numbers.t, numbers
    rows, points = [], []
    for day in days:
        label = n.day(date.fromisoformat(day["day"]))
        rate = day["delivery_rate"]
        points.append(LinePoint(label, rate, n.percent(rate)))
        rows.append(
            {
                "day": n.date(date.fromisoformat(day["day"])),
                "total": n.count(day["total"]),
                "delivered": n.count(day["delivered"]),
                "failed": n.count(day["failed"]),
                "rate": n.percent(rate),
            }
        )
    total = sum(day["total"] for day in days)
    delivered = sum(day["delivered"] for day in days)
    overall = _half_up(Decimal(delivered) * 100 / total, 2) if total else None
    with_value = [(p.value, p) for p in points if p.value is not None]
    if with_value and overall is not None:
        low = min(with_value, key=lambda vp: vp[0])[1]
        high = max(with_value, key=lambda vp: vp[0])[1]
        desc = t(
            "dashboard.delivery.desc",
            first=points[0].label,
            last=points[-1].label,
            low=low.text,
            low_day=low.label,
            high=high.text,
            high_day=high.label,
            average=n.percent(overall),
        )
    else:
        desc = t("dashboard.delivery.empty")
    chart = line_chart(
        points,
        chart_id="delivery-chart",
        title=t("dashboard.delivery.title"),
        desc=desc,
        empty=t("dashboard.delivery.empty"),
        ticks=[Tick(v, n.percent(v, 0)) for v in _RATE_TICKS],
        y_max=100,
        average=None
        if overall is None
        else Tick(overall, t("dashboard.delivery.average", percent=n.percent(overall))),
    )
    return {"chart": chart, "rows": rows, "overall": n.percent(overall), "total": n.count(total)}


# -- money by channel -----------------------------------------------------------------------

_MONEY = ("revenue", "cost", "margin")


def channel_money(
    channels: Sequence[Mapping[str, Any]], calls: Mapping[str, Any], numbers: Numbers
) -> dict[str, Any]:
    """`channels`: the messages' `by_channel`; `calls`: the call metrics (the phone row)."""
    t, n = numbers.t, numbers
    entries = [
        (
            group["channel"],
            t("dashboard.money.messages", count=n.count(group["count"])),
            [group[k] for k in _MONEY],
        )
        for group in channels
    ]
    call = calls["current_period"]
    if call["calls"] or any(call[f"total_{k}"] for k in _MONEY):
        entries.append(
            (
                "phone",
                t("dashboard.money.calls", count=n.count(call["calls"])),
                [call["total_revenue"], call["total_cost"], call["total_margin"]],
            )
        )
    rows = [
        {"channel": t(f"channel.{name}"), "volume": volume, "values": [n.money(v) for v in values]}
        for name, volume, values in entries
    ]
    sums = [_half_up(sum((_decimal(e[2][i]) for e in entries), Decimal(0)), 4) for i in range(3)]
    series = [t("dashboard.money.billed"), t("dashboard.money.cost"), t("dashboard.money.margin")]
    # a channel without money (email, WhatsApp: the tenant pays its provider) stays in the
    # table; the chart shows the others
    groups = [
        BarGroup(t(f"channel.{name}"), [float(v) for v in values], [n.money(v) for v in values])
        for name, _, values in entries
        if any(values)
    ]
    desc = "; ".join(
        f"{row['channel']}: "
        + ", ".join(f"{s} {v}" for s, v in zip(series, row["values"], strict=True))
        for row in rows
    ) or t("dashboard.money.empty")
    chart = bar_chart(
        groups,
        series,
        chart_id="money-chart",
        title=t("dashboard.money.title"),
        desc=desc,
        empty=t("dashboard.money.empty"),
    )
    return {"rows": rows, "total": [n.money(v) for v in sums], "chart": chart}


# -- what lost money ------------------------------------------------------------------------


def unprofitable_rows(report: Mapping[str, Any], numbers: Numbers) -> dict[str, Any]:
    t, n = numbers.t, numbers
    items = []
    for item in report["items"]:
        if item["type"] == "call":
            size = n.duration(item["duration_seconds"])
        else:
            size = t("dashboard.loss.segments", count=n.count(item["num_segments"] or 0))
        items.append(
            {
                "when": n.moment(item["time"]),
                "kind": t(f"dashboard.kind.{item['type']}"),
                "channel": t(f"channel.{item['channel']}"),
                "contact": item["contact"] or NONE,
                "size": size,
                "revenue": n.money(item["revenue"], 4),
                "cost": n.money(item["cost"], 4),
                "margin": n.money(item["margin"], 4),
                "margin_percentage": n.percent(item["margin_percentage"]),
            }
        )
    shares = [
        {
            "summary": t(
                "dashboard.loss.share",
                channel=t(f"channel.{share['channel']}"),
                losing=n.count(share["losing"]),
                priced=n.count(share["priced"]),
                percent=n.percent(share["loss_share"]),
                loss=n.money(share["total_loss"], 4),
            ),
        }
        for share in report["loss_share_by_channel"]
        if share["losing"]
    ]
    return {"items": items, "shares": shares}


# -- one contact ------------------------------------------------------------------------------


def _status(t: Translate, status: str | None) -> str:
    if not status:
        return NONE
    key = f"dashboard.status.{status}"
    text = t(key)
    return status if text == key else text


def timeline_rows(page: Mapping[str, Any], numbers: Numbers) -> dict[str, Any]:
    t, n = numbers.t, numbers
    items = []
    for item in page["items"]:
        call = item["type"] == "call"
        content = n.duration(item["duration_seconds"]) if call else (item["content"] or NONE)
        items.append(
            {
                "when": n.moment(item["time"]),
                "kind": t(f"dashboard.kind.{item['type']}"),
                "channel": t(f"channel.{item['channel']}"),
                "direction": t(f"dashboard.direction.{item['direction']}"),
                "status": _status(t, item["status"]),
                "cost": n.money(item["cost"], 4),
                "content": content,
            }
        )
    return {"contact": page["contact"], "items": items, "next_cursor": page["next_cursor"]}
