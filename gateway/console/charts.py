"""The dashboard's charts as server-rendered SVG: no chart library, no script.

Readable without colour: every value is also written as text (direct labels, the tooltip of
each point and bar, and the data table the page shows next to each chart), series differ by
pattern (solid, hatched, dotted) as well as by colour, and each chart has `role="img"`, an
`aria-label`, a `<title>` and a `<desc>`. With no data a chart still draws its frame and says
so in words. Numbers arrive formatted in the page's language: this module places text, it
never formats a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 720
_INK, _MUTED, _GRID = "#1d232b", "#5b6572", "#d5dbe2"
# colour and pattern per series: the pattern alone tells them apart
_SERIES_STYLE = (("#1f5fbf", "solid"), ("#b35c00", "hatch"), ("#17693a", "dots"))


@dataclass(frozen=True)
class LinePoint:
    label: str  # the x label, e.g. "3 Nov"
    value: float | None  # on the y scale; None: nothing to show that day (a gap, not a 0)
    text: str  # the value as the page writes it, e.g. "95.2%"


@dataclass(frozen=True)
class Tick:
    value: float
    text: str


@dataclass(frozen=True)
class BarGroup:
    label: str  # e.g. "SMS"
    values: Sequence[float]  # one per series
    texts: Sequence[str]  # the same values as the page writes them


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _el(tag: str, content: str = "", **attrs: object) -> str:
    """An SVG element; attribute names use `_` for `-`, floats are rounded to 0.1."""
    parts = [tag]
    for name, value in attrs.items():
        shown = _num(value) if isinstance(value, float) else str(value)
        parts.append(f'{name.rstrip("_").replace("_", "-")}="{escape(shown)}"')
    head = " ".join(parts)
    return f"<{head}>{content}</{tag}>" if content else f"<{head}/>"


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    size: int = 12,
    colour: str = _INK,
    bold: bool = False,
) -> str:
    return _el(
        "text",
        str(escape(text)),
        x=float(x),
        y=float(y),
        text_anchor=anchor,
        font_size=size,
        font_family="system-ui, sans-serif",
        font_weight="600" if bold else "normal",
        fill=colour,
    )


def _tooltip(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def _svg(chart_id: str, height: int, title: str, desc: str, body: Sequence[str]) -> Markup:
    head = _el(
        "svg",
        "X",
        xmlns="http://www.w3.org/2000/svg",
        class_="chart",
        id=chart_id,
        viewBox=f"0 0 {WIDTH} {height}",
        role="img",
        aria_label=title,
        aria_describedby=f"{chart_id}-desc",
    ).removesuffix("X</svg>")
    titles = _el("title", str(escape(title)), id=f"{chart_id}-title")
    titles += _el("desc", str(escape(desc)), id=f"{chart_id}-desc")
    return Markup(head + titles + "".join(body) + "</svg>")


# -- a line over days -------------------------------------------------------------------------

_LINE_HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 24, 24, 44
# direct labels over the points while they fit; beyond, the tooltips and the table carry them
_LABELLED_POINTS = 16
_X_LABELS = 10


def line_chart(
    points: Sequence[LinePoint],
    *,
    chart_id: str,
    title: str,
    desc: str,
    empty: str,
    ticks: Sequence[Tick],
    y_max: float,
    average: Tick | None = None,
) -> Markup:
    """One value per x band (a day), joined by a line that breaks where a value is missing;
    `ticks` mark the y axis from 0 to `y_max`; `average`, a dashed line across."""
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, _LINE_HEIGHT - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    band = plot_w / max(len(points), 1)

    def x_of(index: int) -> float:
        return _LEFT + band * (index + 0.5)

    def y_of(value: float) -> float:
        return bottom - plot_h * max(0.0, min(value, y_max)) / y_max

    body = []
    for tick in ticks:
        y = y_of(tick.value)
        body.append(_el("line", x1=_LEFT, x2=_LEFT + plot_w, y1=y, y2=y, stroke=_GRID))
        body.append(_text(_LEFT - 8, y + 4, tick.text, anchor="end", size=11, colour=_MUTED))
    step = max(1, math.ceil(len(points) / _X_LABELS))
    for index in range(0, len(points), step):
        label = points[index].label
        body.append(_text(x_of(index), bottom + 18, label, anchor="middle", colour=_MUTED))
    shown = [(i, p.value, p) for i, p in enumerate(points) if p.value is not None]
    if not shown:
        middle = _TOP + plot_h / 2
        body.append(_text(_LEFT + plot_w / 2, middle, empty, anchor="middle", size=14))
        return _svg(chart_id, _LINE_HEIGHT, title, desc, body)
    if average is not None:
        y = y_of(average.value)
        body.append(
            _el(
                "line",
                x1=_LEFT,
                x2=_LEFT + plot_w,
                y1=y,
                y2=y,
                stroke=_MUTED,
                stroke_width=1.5,
                stroke_dasharray="6 4",
                class_="average",
            )
        )
        # its label is a legend above the plot, where no point can hide it
        body.append(
            _el(
                "line",
                x1=_LEFT,
                x2=_LEFT + 24,
                y1=10.0,
                y2=10.0,
                stroke=_MUTED,
                stroke_width=1.5,
                stroke_dasharray="6 4",
            )
        )
        body.append(_text(_LEFT + 30, 14, average.text, size=11, colour=_MUTED))
    colour = _SERIES_STYLE[0][0]
    for run in _runs([(i, v) for i, v, _ in shown]):
        if len(run) > 1:
            coords = " ".join(f"{_num(x_of(i))},{_num(y_of(v))}" for i, v in run)
            body.append(
                _el("polyline", points=coords, fill="none", stroke=colour, stroke_width=2.5)
            )
    labelled = len(points) <= _LABELLED_POINTS
    for index, value, point in shown:
        x, y = x_of(index), y_of(value)
        tip = _tooltip(f"{point.label}: {point.text}")
        body.append(_el("circle", tip, cx=x, cy=y, r=4, fill=colour, stroke="#fff", class_="point"))
        if labelled:
            body.append(_text(x, y - 10, point.text, anchor="middle", size=11))
    return _svg(chart_id, _LINE_HEIGHT, title, desc, body)


def _runs(values: Sequence[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    """Consecutive days with a value: the line goes through each run, never across a gap."""
    runs: list[list[tuple[int, float]]] = []
    for index, value in values:
        if runs and runs[-1][-1][0] == index - 1:
            runs[-1].append((index, value))
        else:
            runs.append([(index, value)])
    return runs


# -- grouped horizontal bars --------------------------------------------------------------

_BAR, _BAR_GAP, _GROUP_GAP = 16, 3, 16
_LABEL_W, _VALUE_W, _LEGEND_H = 104, 96, 34


def _patterns(chart_id: str) -> str:
    hatch_colour, dots_colour = _SERIES_STYLE[1][0], _SERIES_STYLE[2][0]
    hatch = _el("rect", width=6, height=6, fill="#fff") + _el(
        "line", x1=0, y1=0, x2=0, y2=6, stroke=hatch_colour, stroke_width=3
    )
    dots = _el("rect", width=5, height=5, fill=dots_colour) + _el(
        "circle", cx=2.5, cy=2.5, r=1.2, fill="#fff"
    )
    return _el(
        "defs",
        _el(
            "pattern",
            hatch,
            id=f"{chart_id}-hatch",
            width=6,
            height=6,
            patternUnits="userSpaceOnUse",
            patternTransform="rotate(45)",
        )
        + _el(
            "pattern", dots, id=f"{chart_id}-dots", width=5, height=5, patternUnits="userSpaceOnUse"
        ),
    )


def _fill(chart_id: str, series: int) -> tuple[str, str]:
    """(fill, outline) of a series' bars."""
    colour, pattern = _SERIES_STYLE[series % len(_SERIES_STYLE)]
    return (colour if pattern == "solid" else f"url(#{chart_id}-{pattern})"), colour


def bar_chart(
    groups: Sequence[BarGroup],
    series: Sequence[str],
    *,
    chart_id: str,
    title: str,
    desc: str,
    empty: str,
) -> Markup:
    """For each group (a channel) one bar per series (billed, cost, margin) from a shared
    zero line, negative values to its left; each bar carries its value as text."""
    group_h = len(series) * (_BAR + _BAR_GAP) + _GROUP_GAP
    height = _LEGEND_H + max(len(groups), 1) * group_h + 8
    body = [_patterns(chart_id)]
    x = 2.0  # the legend: a swatch of each series and its name
    for n, name in enumerate(series):
        fill, outline = _fill(chart_id, n)
        body.append(_el("rect", x=x, y=8, width=16, height=16, fill=fill, stroke=outline))
        body.append(_text(x + 22, 21, name))
        x += 40 + 8 * len(name)
    values = [v for group in groups for v in group.values]
    most = max((v for v in values if v > 0), default=0.0)
    least = min((v for v in values if v < 0), default=0.0)
    if most == least:  # no group, or every value 0
        body.append(_text(WIDTH / 2, _LEGEND_H + group_h / 2, empty, anchor="middle", size=14))
        return _svg(chart_id, height, title, desc, body)
    # [labels][text of negative bars][negative bars] zero [positive bars][their text]
    negative_text = _VALUE_W if least < 0 else 0
    scale = (WIDTH - _LABEL_W - _VALUE_W - negative_text) / (most - least)
    zero = _LABEL_W + negative_text - least * scale
    for g, group in enumerate(groups):
        top = _LEGEND_H + g * group_h
        middle = top + (group_h - _GROUP_GAP) / 2 + 4
        body.append(_text(_LABEL_W - 10, middle, group.label, anchor="end", size=13, bold=True))
        for n, (value, text) in enumerate(zip(group.values, group.texts, strict=True)):
            y = top + n * (_BAR + _BAR_GAP)
            length = abs(value) * scale
            left = zero - length if value < 0 else zero
            fill, outline = _fill(chart_id, n)
            tip = _tooltip(f"{group.label}, {series[n]}: {text}")
            body.append(
                _el(
                    "rect",
                    tip,
                    x=left,
                    y=float(y),
                    width=length,
                    height=_BAR,
                    fill=fill,
                    stroke=outline,
                    class_="bar",
                )
            )
            if value < 0:
                body.append(_text(left - 6, y + _BAR - 4, text, anchor="end", size=11))
            else:
                body.append(_text(zero + length + 6, y + _BAR - 4, text, size=11))
    body.append(_el("line", x1=zero, x2=zero, y1=_LEGEND_H - 4, y2=height - 8, stroke=_INK))
    return _svg(chart_id, height, title, desc, body)
