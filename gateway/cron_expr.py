"""Cron expressions from `[triggers] crons`: five fields (minute hour day month weekday) with
`*`, `*/n`, `a-b`, `a-b/n` and lists, matched in UTC like Cloudflare's cron triggers.

No I/O and no scheduling here, so configuration can check an expression at start-up without
importing the services that run it (`gateway.services.cron`)."""

from __future__ import annotations

from datetime import UTC, datetime

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step <= 0:
            raise ValueError(f"bad step in {part!r}")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = int(first), int(last)
        else:
            start = int(base)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


class Cron:
    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(f"cron {expression!r} must have five fields")
        self.expression = expression
        minute, hour, day, month, weekday = (_field(f, *_RANGES[i]) for i, f in enumerate(fields))
        self.minute, self.hour, self.day, self.month = minute, hour, day, month
        self.weekday = {0 if v == 7 else v for v in weekday}  # 7 is Sunday too
        self._any_day = fields[2] == "*"
        self._any_weekday = fields[4] == "*"

    def matches(self, moment: datetime) -> bool:
        moment = moment.astimezone(UTC)
        weekday = (moment.weekday() + 1) % 7  # cron: Sunday is 0
        if self._any_day or self._any_weekday:
            day_ok = moment.day in self.day and weekday in self.weekday
        else:  # both restricted: either matches, as in Vixie cron
            day_ok = moment.day in self.day or weekday in self.weekday
        return (
            moment.minute in self.minute
            and moment.hour in self.hour
            and moment.month in self.month
            and day_ok
        )
