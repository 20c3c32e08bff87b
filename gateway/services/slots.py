"""Slot arithmetic and the sentences the voice assistant reads: the booking rules of one
tenant at one moment, free-slot search over booked intervals, and the results' wording.
Pure functions of their inputs (no I/O), so the booking service stays about storage and
atomicity. See gateway/services/booking.py for how slots are defined."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.channel_models import BookingSettings, Weekday
from gateway.domain.appointments import MAX_DURATION
from gateway.ids import parse_iso

BookingStatus = Literal["booked", "already_booked", "slot_taken", "rescheduled", "updated"]

WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

# -- saying dates and times ------------------------------------------------------------------


def say_day(day: date) -> str:
    return f"{DAY_NAMES[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _times(slots: list[datetime], cap: int) -> str:
    if len(slots) <= cap:
        return _join([hhmm(s) for s in slots])
    shown = ", ".join(hhmm(s) for s in slots[:cap])
    return f"{shown} and {len(slots) - cap} more until {hhmm(slots[-1])}"


def say_moments(moments: list[datetime]) -> str:
    """'Tuesday 1 December at 09:30 and 10:00, and Wednesday 2 December at 09:00'."""
    by_day: dict[date, list[datetime]] = {}
    for moment in moments:
        by_day.setdefault(moment.date(), []).append(moment)
    parts = [f"{say_day(day)} at {_times(slots, 8)}" for day, slots in by_day.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + ", and " + parts[-1]


# -- the rules of one tenant at one moment ---------------------------------------------------


@dataclass(frozen=True)
class BookingRules:
    settings: BookingSettings
    tz: ZoneInfo
    now: datetime  # UTC

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.settings.slot_minutes + self.settings.buffer_minutes)

    @property
    def buffer(self) -> timedelta:
        return timedelta(minutes=self.settings.buffer_minutes)

    @property
    def earliest(self) -> datetime:
        return self.now + timedelta(minutes=self.settings.min_notice_minutes)

    @property
    def today(self) -> date:
        return self.now.astimezone(self.tz).date()

    @property
    def last_day(self) -> date:
        return self.today + timedelta(days=self.settings.horizon_days)

    def utc(self, moment: datetime) -> datetime:
        # a time without offset (as a voice assistant may say it) is a wall time of the
        # booking timezone; the HTTP API only accepts times with an offset
        if moment.tzinfo is None or moment.utcoffset() is None:
            moment = moment.replace(tzinfo=self.tz)
        return moment.astimezone(UTC)

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.tz).astimezone(UTC)

    def _instant(self, day: date, hhmm: str) -> datetime:
        if hhmm == "24:00":
            return self.day_start(day + timedelta(days=1))
        hour, minute = (int(part) for part in hhmm.split(":"))
        return datetime.combine(day, time(hour, minute), self.tz).astimezone(UTC)

    def ranges(self, day: date) -> list[tuple[datetime, datetime]]:
        hours = self.settings.opening_hours.get(WEEKDAYS[day.weekday()], [])
        return [(self._instant(day, r.open), self._instant(day, r.close)) for r in hours]

    def grid(self, day: date, length: timedelta) -> list[datetime]:
        """Every slot start of the day (UTC) whose appointment ends by closing time."""
        starts: list[datetime] = []
        for opens, closes in self.ranges(day):
            start = opens
            while start + length <= closes:
                starts.append(start)
                start += self.step
        return sorted(set(starts))  # overlapping opening ranges must not offer a slot twice

    def bookable(self, day: date, length: timedelta) -> list[datetime]:
        if day > self.last_day:
            return []
        return [s for s in self.grid(day, length) if s >= self.earliest]

    def opening_text(self, day: date) -> str:
        hours = self.settings.opening_hours.get(WEEKDAYS[day.weekday()], [])
        if not hours:
            return f"closed on {DAY_NAMES[day.weekday()]}"
        spans = ", ".join(f"{r.open}-{r.close}" for r in hours)
        return f"{DAY_NAMES[day.weekday()]}: {spans}"


class Occupancy:
    """Booked intervals, sorted, to count the overlaps of many candidate slots."""

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        self.items = sorted((parse_iso(s), parse_iso(e)) for s, e in rows)
        self.starts = [s for s, _ in self.items]

    def count(self, start: datetime, until: datetime) -> int:
        # no appointment lasts longer than MAX_DURATION, so earlier starts cannot overlap
        lo = bisect.bisect_left(self.starts, start - MAX_DURATION)
        hi = bisect.bisect_left(self.starts, until)
        return sum(1 for _, ends in self.items[lo:hi] if ends > start)


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Availability:
    timezone: str
    first: date
    last: date
    duration_minutes: int
    days: dict[date, list[datetime]]  # local times, with the booking timezone's offset
    next_free: datetime | None  # only looked up when the range has no free slot
    bookable_until: date

    @property
    def slots(self) -> list[datetime]:
        return [slot for day in self.days.values() for slot in day]

    def sentence(self) -> str:
        slots = self.slots
        single = self.first == self.last
        where = (
            f"on {say_day(self.first)}"
            if single
            else f"between {say_day(self.first)} and {say_day(self.last)}"
        )
        if slots and single:
            if len(slots) > 8:
                return f"On {say_day(self.first)}, {len(slots)} slots are free: {_times(slots, 5)}."
            verb = "is" if len(slots) == 1 else "are"
            return f"On {say_day(self.first)}: {_times(slots, 8)} {verb} free."
        if slots:
            days = [(d, s) for d, s in self.days.items() if s]
            parts = [f"{say_day(d)} at {_times(s, 5)}" for d, s in days[:7]]
            more = f"; and on {len(days) - 7} more days" if len(days) > 7 else ""
            return f"Free slots {where}: " + "; ".join(parts) + more + "."
        if self.first > self.bookable_until:
            return (
                "Appointments can only be booked up to "
                f"{say_day(self.bookable_until)}; there is no slot {where}."
            )
        if self.next_free is not None:
            return (
                f"No free slot {where}; the next free one is {say_day(self.next_free.date())} "
                f"at {hhmm(self.next_free)}."
            )
        return f"No free slot {where}, nor any later one until {say_day(self.bookable_until)}."

    def public(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "start": self.first.isoformat(),
            "end": self.last.isoformat(),
            "duration_minutes": self.duration_minutes,
            "bookable_until": self.bookable_until.isoformat(),
            "days": [
                {"date": d.isoformat(), "slots": [s.isoformat() for s in slots]}
                for d, slots in self.days.items()
            ],
            "next_free": self.next_free.isoformat() if self.next_free else None,
            "sentence": self.sentence(),
        }


@dataclass(frozen=True)
class BookingResult:
    status: BookingStatus
    requested: datetime  # local
    appointment: dict[str, Any] | None = None
    alternatives: tuple[datetime, ...] = ()  # local, only for slot_taken

    def sentence(self) -> str:
        when = f"{say_day(self.requested.date())} at {hhmm(self.requested)}"
        if self.status == "booked":
            return f"Booked for {when}."
        if self.status == "rescheduled":
            return f"Moved to {when}."
        if self.status == "already_booked":
            return f"This appointment is already booked for {when}."
        if self.status == "updated":
            status = self.appointment["status"] if self.appointment else "updated"
            return f"The appointment of {when} is {status.replace('_', ' ')}."
        if self.alternatives:
            return (
                f"{when} is no longer free. The next free slots are "
                f"{say_moments(list(self.alternatives))}."
            )
        return f"{when} is no longer free, and no later slot is free within the booking horizon."

    def public_alternatives(self) -> list[str]:
        return [a.isoformat() for a in self.alternatives]


# -- the service -----------------------------------------------------------------------------
