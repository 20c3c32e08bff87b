"""The dashboard's SVG charts on their own: what a reader (or a screen reader) gets from them
with data, with gaps, with nothing, and with text that is not markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.console.charts import BarGroup, LinePoint, Tick, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"
TICKS = [Tick(0, "0%"), Tick(50, "50%"), Tick(100, "100%")]


def _line(
    points: list[LinePoint],
    *,
    title: str = "Delivery rate",
    desc: str = "what it shows",
    average: Tick | None = None,
) -> ET.Element:
    chart = line_chart(
        points,
        chart_id="c",
        title=title,
        desc=desc,
        empty="Nothing here",
        ticks=TICKS,
        y_max=100,
        average=average,
    )
    return ET.fromstring(str(chart))


def _texts(svg: ET.Element) -> list[str]:
    return [str(t.text) for t in svg.iter(f"{SVG}text")]


def _points(values: list[float | None]) -> list[LinePoint]:
    return [
        LinePoint(f"{n + 1} Nov", v, "—" if v is None else f"{v:g}%") for n, v in enumerate(values)
    ]


def test_a_line_is_an_image_with_a_name_a_description_and_values_as_text() -> None:
    svg = _line(_points([100, 50, 0]), average=Tick(50, "the whole period: 50%"))
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "Delivery rate"
    assert svg.get("aria-describedby") == "c-desc"
    assert svg.findtext(f"{SVG}title") == "Delivery rate"
    assert [d.get("id") for d in svg.iter(f"{SVG}desc")] == ["c-desc"]
    circles = list(svg.iter(f"{SVG}circle"))
    assert [c.findtext(f"{SVG}title") for c in circles] == [
        "1 Nov: 100%",
        "2 Nov: 50%",
        "3 Nov: 0%",
    ]
    heights = [float(str(c.get("cy"))) for c in circles]
    assert heights[0] < heights[1] < heights[2]  # 100% at the top, 0% at the bottom
    assert {"100%", "50%", "0%", "1 Nov", "3 Nov", "the whole period: 50%"} <= set(_texts(svg))
    dashed = [line for line in svg.iter(f"{SVG}line") if line.get("class") == "average"]
    assert len(dashed) == 1 and float(str(dashed[0].get("y1"))) == heights[1]


def test_a_missing_day_breaks_the_line_instead_of_drawing_a_zero() -> None:
    svg = _line(_points([90, 80, None, 70, None, 60]))
    assert len(list(svg.iter(f"{SVG}circle"))) == 4
    # 1-2 joined, 4 and 6 alone: one polyline only (a single point needs none)
    lines = list(svg.iter(f"{SVG}polyline"))
    assert len(lines) == 1 and len(str(lines[0].get("points")).split()) == 2


def test_many_days_keep_tooltips_and_thin_out_the_labels() -> None:
    svg = _line(_points([float(n % 7 * 10) for n in range(90)]))
    assert len(list(svg.iter(f"{SVG}circle"))) == 90
    day_labels = [t for t in _texts(svg) if t.endswith(" Nov")]
    assert 5 <= len(day_labels) <= 10 and day_labels[0] == "1 Nov"
    assert "60%" not in _texts(svg)  # no value over each point: the table carries them


def test_nothing_to_draw_says_so() -> None:
    svg = _line(_points([None, None]))
    assert list(svg.iter(f"{SVG}circle")) == [] and list(svg.iter(f"{SVG}polyline")) == []
    assert "Nothing here" in _texts(svg)
    empty = _line([])
    assert "Nothing here" in _texts(empty) and empty.get("role") == "img"


def test_text_is_never_markup() -> None:
    svg = _line([LinePoint("<b>1</b>", 10, "10 & more")], title='A "quoted" <title>', desc="x < y")
    assert svg.get("aria-label") == 'A "quoted" <title>'
    assert svg.findtext(f"{SVG}desc") == "x < y"
    assert "<b>1</b>" in _texts(svg) and "10 & more" in _texts(svg)


def _bars(groups: list[BarGroup]) -> ET.Element:
    chart = bar_chart(
        groups, ["Billed", "Cost", "Margin"], chart_id="m", title="Money", desc="d", empty="None"
    )
    return ET.fromstring(str(chart))


def _bar(svg: ET.Element, tip: str) -> tuple[float, float]:
    for rect in svg.iter(f"{SVG}rect"):
        if rect.findtext(f"{SVG}title") == tip:
            return float(str(rect.get("x"))), float(str(rect.get("width")))
    raise AssertionError(f"no bar {tip}")


def test_bars_are_proportional_labelled_and_patterned() -> None:
    svg = _bars(
        [
            BarGroup("SMS", [4.0, 1.0, 3.0], ["€4", "€1", "€3"]),
            BarGroup("Phone", [2.0, 2.0, 0.0], ["€2", "€2", "€0"]),
        ]
    )
    assert svg.get("role") == "img" and svg.findtext(f"{SVG}title") == "Money"
    sms_x, sms_billed = _bar(svg, "SMS, Billed: €4")
    phone_x, phone_billed = _bar(svg, "Phone, Billed: €2")
    assert sms_x == phone_x and sms_billed == 2 * phone_billed
    assert _bar(svg, "Phone, Margin: €0")[1] == 0
    assert {"SMS", "Phone", "€4", "€1", "€3", "Billed", "Cost", "Margin"} <= set(_texts(svg))
    fills = {r.get("fill") for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"}
    assert fills == {"#1f5fbf", "url(#m-hatch)", "url(#m-dots)"}
    assert {p.get("id") for p in svg.iter(f"{SVG}pattern")} == {"m-hatch", "m-dots"}


def test_a_loss_goes_left_of_zero() -> None:
    svg = _bars([BarGroup("SMS", [1.0, 3.0, -2.0], ["€1", "€3", "-€2"])])
    zero, billed = _bar(svg, "SMS, Billed: €1")
    left, width = _bar(svg, "SMS, Margin: -€2")
    assert left + width == zero and width == 2 * billed


def test_no_money_says_so() -> None:
    for groups in ([], [BarGroup("SMS", [0.0, 0.0, 0.0], ["€0", "€0", "€0"])]):
        svg = _bars(groups)
        assert "None" in _texts(svg)
        assert not [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]
