"""Booking engine: free slots, booking without double-booking, cancel and reschedule.

Slots. Each opening range of a day (`BookingSettings.opening_hours`, wall-clock times in the
booking timezone) is first resolved to two real instants; slots then start at the opening
instant and step by slot + buffer minutes in real (UTC) time while the appointment still ends
by closing time. Stepping in real time rather than on the wall clock is what keeps slots
from overlapping and keeps every slot's length true on daylight-saving days: on the spring
day a 01:00-05:00 opening is three real hours and no slot starts at the missing 02:00-03:00;
on the autumn day it is five, and 02:00 is offered twice, once at +02:00 and once at +01:00.
A wall time inside the spring gap resolves to the instant after it (PEP 495, fold=0).

Capacity. A slot is free while fewer than `capacity` booked appointments overlap
[start, end + buffer). Booking runs the idempotency check, the capacity count and the
insert in one `write_fn`, after `store.lock_bookings`: whatever the number of writers
(write connections, instances), the writes that take a place in one tenant run one after
the other, so two requests for the last place cannot both see it free. A reschedule takes
the same lock; a status change only frees a place, and locks just its own row.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway.channel_models import PhoneConfig
from gateway.domain.appointments import MAX_DURATION
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.ids import iso, new_id, parse_iso
from gateway.services.channel_config import ChannelConfigService
from gateway.services.principal import TenantPrincipal
from gateway.services.slots import (
    Availability,
    BookingResult,
    BookingRules,
    BookingStatus,
    Occupancy,
    hhmm,
    say_day,
)
from gateway.store import appointments as store
from gateway.store import tenants as tenants_store
from gateway.store.engine import Engine, UniqueViolation
from gateway.store.paging import decode_cursor, encode_cursor
from gateway.store.tenant_scope import ScopedConnection, TenantDB
from gateway.store.tenants import Tenant
from gateway.validation import normalize_e164, normalize_email

log = logging.getLogger("gateway.booking")

# (tenant id, appointment, rescheduled): confirm a booking, or its new time once moved
OnBooked = Callable[[str, dict[str, Any], bool], Awaitable[None]]
TenantRef = Tenant | TenantPrincipal | TenantDB | str
Source = Literal["voice", "api"]
ClosingStatus = Literal["cancelled", "completed", "no_show"]

MAX_RANGE_DAYS = 31
_SEARCH_WINDOW_DAYS = 7
ALTERNATIVES = 3
# a closed appointment may be corrected between these two; nothing reopens a cancelled one
_TRANSITIONS = {
    "booked": {"cancelled", "completed", "no_show"},
    "completed": {"no_show"},
    "no_show": {"completed"},
    "cancelled": set(),
}


class _Unset(Enum):
    UNSET = 0


UNSET = _Unset.UNSET


class BookingInvalid(ValidationFailed):
    """A request the booking rules refuse; `reason` is machine-readable, `detail` readable
    aloud ("is outside the opening hours …")."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__([{"field": field, "message": detail}], message=f"{field} {detail}")
        self.details["reason"] = reason
        self.reason = reason
        self.detail = detail


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BookingService:
    def __init__(
        self, db: Engine, channels: ChannelConfigService, on_booked: OnBooked | None = None
    ) -> None:
        self.db = db
        self.channels = channels
        self.on_booked = on_booked
        # replaced in tests, so "now" (notice, horizon, today) does not depend on the date
        self.clock: Callable[[], datetime] = _utc_now

    async def rules(self, tenant: TenantRef) -> BookingRules:
        return (await self._context(tenant))[2]

    async def _context(self, ref: TenantRef) -> tuple[Tenant, TenantDB, BookingRules]:
        if isinstance(ref, TenantPrincipal):
            ref = ref.tenant
        if isinstance(ref, Tenant):
            tenant = ref
        else:
            tenant_id = ref.tenant_id if isinstance(ref, TenantDB) else ref
            found = await tenants_store.get_tenant(self.db, tenant_id)
            if found is None:
                raise NotFound(f"No tenant {tenant_id!r}", code="tenant_not_found")
            tenant = found
        tdb = ref if isinstance(ref, TenantDB) else TenantDB(self.db, tenant.id)
        config = (await self.channels.load(tdb, "phone")).config()
        assert isinstance(config, PhoneConfig)
        tz = ZoneInfo(config.booking.timezone or tenant.timezone)
        return tenant, tdb, BookingRules(config.booking, tz, self.clock().astimezone(UTC))

    @staticmethod
    def _length(rules: BookingRules, minutes: int | None, field: str) -> timedelta:
        slot = rules.settings.slot_minutes
        if minutes is None:
            return timedelta(minutes=slot)
        if minutes <= 0 or minutes % slot or timedelta(minutes=minutes) > MAX_DURATION:
            raise BookingInvalid(
                field,
                "bad_duration",
                f"must be a multiple of the slot length ({slot} minutes), at most one day",
            )
        return timedelta(minutes=minutes)

    async def _occupancy(self, tdb: TenantDB, start: datetime, until: datetime) -> Occupancy:
        return Occupancy(await store.booked_between(tdb, iso(start - MAX_DURATION), iso(until)))

    def _free(
        self, rules: BookingRules, occupancy: Occupancy, start: datetime, length: timedelta
    ) -> bool:
        return occupancy.count(start, start + length + rules.buffer) < rules.settings.capacity

    async def _next_free(
        self, tdb: TenantDB, rules: BookingRules, after: datetime, length: timedelta, limit: int
    ) -> list[datetime]:
        """Up to `limit` free slot starts strictly after `after`, within the horizon (local)."""
        first = max(after, rules.now).astimezone(rules.tz).date()
        last = rules.last_day
        if first > last:
            return []
        found: list[datetime] = []
        day = first
        while day <= last and len(found) < limit:
            # a week of bookings at a time: the next free slot is usually close, and loading
            # the whole horizon of a busy tenant cost more than the search (bench/RESULTS.md)
            window_last = min(last, day + timedelta(days=_SEARCH_WINDOW_DAYS - 1))
            window_end = rules.day_start(window_last + timedelta(days=1)) + length + rules.buffer
            occupancy = await self._occupancy(tdb, max(after, rules.day_start(day)), window_end)
            while day <= window_last and len(found) < limit:
                for start in rules.bookable(day, length):
                    if start > after and self._free(rules, occupancy, start, length):
                        found.append(start.astimezone(rules.tz))
                        if len(found) == limit:
                            break
                day += timedelta(days=1)
        return found

    async def availability(
        self, tenant: TenantRef, first: date, last: date | None = None, duration: int | None = None
    ) -> Availability:
        _, tdb, rules = await self._context(tenant)
        last = first if last is None else last
        if last < first:
            raise BookingInvalid("end", "bad_range", "must not be before the start date")
        if (last - first).days >= MAX_RANGE_DAYS:
            raise BookingInvalid(
                "end", "range_too_long", f"must be less than {MAX_RANGE_DAYS} days after the start"
            )
        length = self._length(rules, duration, "duration")
        days: dict[date, list[datetime]] = {
            first + timedelta(days=n): [] for n in range((last - first).days + 1)
        }
        lo, hi = max(first, rules.today), min(last, rules.last_day)
        if lo <= hi:
            until = rules.day_start(hi + timedelta(days=1)) + length + rules.buffer
            occupancy = await self._occupancy(tdb, rules.day_start(lo), until)
            for day in days:
                if lo <= day <= hi:
                    days[day] = [
                        s.astimezone(rules.tz)
                        for s in rules.bookable(day, length)
                        if self._free(rules, occupancy, s, length)
                    ]
        next_free = None
        if not any(days.values()) and last <= rules.last_day:
            after = rules.day_start(last + timedelta(days=1)) - timedelta(microseconds=1)
            found = await self._next_free(tdb, rules, after, length, 1)
            next_free = found[0] if found else None
        return Availability(
            timezone=rules.tz.key,
            first=first,
            last=last,
            duration_minutes=int(length.total_seconds() // 60),
            days=days,
            next_free=next_free,
            bookable_until=rules.last_day,
        )

    def check_start(self, rules: BookingRules, start: datetime, length: timedelta) -> datetime:
        """The start in UTC if the rules allow an appointment of `length` there."""
        at = rules.utc(start)
        if at < rules.now:
            raise BookingInvalid("starts_at", "too_soon", "is in the past")
        if at < rules.earliest:
            raise BookingInvalid(
                "starts_at",
                "too_soon",
                f"is too soon: appointments need {rules.settings.min_notice_minutes} "
                "minutes' notice",
            )
        day = at.astimezone(rules.tz).date()
        if day > rules.last_day:
            raise BookingInvalid(
                "starts_at",
                "beyond_horizon",
                f"is beyond the booking horizon: appointments can be booked up to "
                f"{rules.settings.horizon_days} days ahead (until {say_day(rules.last_day)})",
            )
        for opens, closes in rules.ranges(day):
            if not opens <= at < closes:
                continue
            if at + length > closes:
                raise BookingInvalid(
                    "starts_at",
                    "outside_opening_hours",
                    f"would end after closing time ({hhmm(closes.astimezone(rules.tz))})",
                )
            if (at - opens) % rules.step:
                step_minutes = int(rules.step.total_seconds() // 60)
                before = opens + (at - opens) // rules.step * rules.step
                near = [t for t in (before, before + rules.step) if t + length <= closes]
                example = " or ".join(hhmm(t.astimezone(rules.tz)) for t in near)
                raise BookingInvalid(
                    "starts_at",
                    "off_grid",
                    f"is not on the slot grid: slots start every {step_minutes} minutes from"
                    f" {hhmm(opens.astimezone(rules.tz))}"
                    + (f" (nearest: {example})" if example else ""),
                )
            return at
        raise BookingInvalid(
            "starts_at",
            "outside_opening_hours",
            f"is outside the opening hours ({rules.opening_text(day)})",
        )

    async def book(
        self,
        tenant: TenantRef,
        *,
        name: str,
        phone: str,
        start: datetime,
        email: str | None = None,
        service: str | None = None,
        duration: int | None = None,
        source: Source = "api",
        call_id: str | None = None,
        notes: str | None = None,
    ) -> BookingResult:
        owner, tdb, rules = await self._context(tenant)
        name = name.strip()
        if not name or len(name) > 200 or "\n" in name or "\r" in name:
            raise BookingInvalid(
                "customer_name", "invalid_name", "must be one line of 1 to 200 characters"
            )
        try:
            phone = normalize_e164(phone)
        except ValueError as exc:
            raise BookingInvalid("customer_phone", "invalid_phone", str(exc)) from None
        if email is not None:
            try:
                email = normalize_email(email)
            except ValueError as exc:
                raise BookingInvalid("customer_email", "invalid_email", str(exc)) from None
        length = self._length(rules, duration, "duration_minutes")
        try:
            at = self.check_start(rules, start, length)
        except BookingInvalid:
            # a retry of a booking that was made is answered as such, even once it is too late
            existing = await store.find_booked(tdb, phone, iso(rules.utc(start)), "")
            if existing is None:
                raise
            return BookingResult(
                "already_booked",
                rules.utc(start).astimezone(rules.tz),
                store.public_appointment(existing, rules.tz),
            )
        now = iso(rules.now)
        row: dict[str, Any] = {
            "id": new_id("apt"),
            "customer_name": name,
            "customer_phone": phone,
            "customer_email": email,
            "service": service,
            "starts_at": iso(at),
            "ends_at": iso(at + length),
            "status": "booked",
            "source": source,
            "call_id": call_id,
            "notes": notes,
            "created_at": now,
            "updated_at": now,
        }
        until = iso(at + length + rules.buffer)
        capacity = rules.settings.capacity

        def write(conn: ScopedConnection) -> tuple[BookingStatus, dict[str, Any] | None]:
            store.lock_bookings(conn)  # check and insert as one step, with several writers
            existing = store.same_booking(conn, phone, row["starts_at"])
            if existing is not None:
                return "already_booked", dict(existing)
            if store.count_overlapping(conn, row["starts_at"], until) >= capacity:
                return "slot_taken", None
            try:
                store.insert(conn, row)
            except UniqueViolation:
                # the same booking committed after the look above: answer it as a replay
                existing = store.same_booking(conn, phone, row["starts_at"])
                if existing is None:
                    raise
                return "already_booked", dict(existing)
            return "booked", row

        status, stored = await tdb.write_fn(write)
        local = at.astimezone(rules.tz)
        if stored is None:
            alternatives = await self._next_free(tdb, rules, at, length, ALTERNATIVES)
            return BookingResult("slot_taken", local, None, tuple(alternatives))
        appointment = store.public_appointment(stored, rules.tz)
        if status == "booked":
            await self._notify(owner.id, appointment)
        return BookingResult(status, local, appointment)

    async def _notify(
        self, tenant_id: str, appointment: dict[str, Any], rescheduled: bool = False
    ) -> None:
        if self.on_booked is None:
            return
        try:
            await self.on_booked(tenant_id, appointment, rescheduled)
        except Exception:
            # the appointment is committed: a failed confirmation must not make it look failed
            log.exception("on_booked failed for appointment %s", appointment["id"])

    async def get(self, tenant: TenantRef, appointment_id: str) -> dict[str, Any]:
        _, tdb, rules = await self._context(tenant)
        row = await store.get(tdb, appointment_id)
        if row is None:
            raise NotFound(f"No appointment {appointment_id!r}", code="appointment_not_found")
        return store.public_appointment(row, rules.tz)

    async def find_booked(
        self, tenant: TenantRef, phone: str, start: datetime | None = None
    ) -> dict[str, Any] | None:
        """The booked appointment of `phone` at `start`, or its next upcoming one."""
        _, tdb, rules = await self._context(tenant)
        try:
            phone = normalize_e164(phone)
        except ValueError as exc:
            raise BookingInvalid("customer_phone", "invalid_phone", str(exc)) from None
        at = iso(rules.utc(start)) if start is not None else None
        row = await store.find_booked(tdb, phone, at, iso(rules.now))
        return store.public_appointment(row, rules.tz) if row else None

    async def list(
        self,
        tenant: TenantRef,
        *,
        status: str | None = None,
        phone: str | None = None,
        starts_from: datetime | None = None,
        starts_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        _, tdb, rules = await self._context(tenant)
        filters = {
            "status": status,
            "phone": phone,
            "from": iso(starts_from) if starts_from else None,
            "to": iso(starts_before) if starts_before else None,
        }
        after = decode_cursor(cursor, 2) if cursor else None
        rows = await store.list_appointments(tdb, filters, limit + 1, after)
        page = [dict(r) for r in rows[:limit]]
        return {
            "appointments": [store.public_appointment(r, rules.tz) for r in page],
            "next_cursor": (
                encode_cursor(page[-1]["starts_at"], page[-1]["id"]) if len(rows) > limit else None
            ),
        }

    async def cancel(self, tenant: TenantRef, appointment_id: str) -> dict[str, Any]:
        result = await self.update(tenant, appointment_id, status="cancelled")
        assert result.appointment is not None
        return result.appointment

    async def reschedule(
        self, tenant: TenantRef, appointment_id: str, new_start: datetime
    ) -> BookingResult:
        return await self.update(tenant, appointment_id, starts_at=new_start)

    async def update(
        self,
        tenant: TenantRef,
        appointment_id: str,
        *,
        status: ClosingStatus | None = None,
        starts_at: datetime | None = None,
        notes: str | _Unset | None = UNSET,
    ) -> BookingResult:
        """Change the status, or move the appointment (atomically: the new slot must be free
        not counting the appointment itself), and/or its notes, in one write."""
        if status is not None and starts_at is not None:
            raise BookingInvalid("starts_at", "conflicting_change", "cannot change with status")
        owner, tdb, rules = await self._context(tenant)
        current = await store.get(tdb, appointment_id)
        if current is None:
            raise NotFound(f"No appointment {appointment_id!r}", code="appointment_not_found")
        at: datetime | None = None
        length = parse_iso(current["ends_at"]) - parse_iso(current["starts_at"])
        if starts_at is not None and iso(rules.utc(starts_at)) != current["starts_at"]:
            # the duration of an appointment never changes, so checking it here is safe
            at = self.check_start(rules, starts_at, length)
        now = iso(rules.now)
        capacity = rules.settings.capacity
        buffer = rules.buffer

        def write(conn: ScopedConnection) -> tuple[BookingStatus, dict[str, Any] | None]:
            if at is not None:  # takes a place: serialised with bookings, like book()'s
                store.lock_bookings(conn)
            row = store.get_locked(conn, appointment_id)
            if row is None:
                raise NotFound(f"No appointment {appointment_id!r}", code="appointment_not_found")
            fields: dict[str, Any] = {}
            outcome: BookingStatus = "updated"
            if status is not None and status != row["status"]:
                if status not in _TRANSITIONS[row["status"]]:
                    raise Conflict(
                        f"A {row['status']} appointment cannot become {status}",
                        code="invalid_status_change",
                        details={"status": row["status"]},
                    )
                fields["status"] = status
                if status == "cancelled":
                    fields["cancelled_at"] = now
            if starts_at is not None and row["status"] != "booked":
                raise Conflict(
                    f"Only a booked appointment can be moved; this one is {row['status']}",
                    code="appointment_not_booked",
                    details={"status": row["status"]},
                )
            if at is not None and iso(at) != row["starts_at"]:
                other = store.same_booking(conn, row["customer_phone"], iso(at))
                if other is not None:
                    raise Conflict(
                        "This customer already has an appointment at that time",
                        code="duplicate_appointment",
                        details={"appointment_id": other["id"]},
                    )
                taken = store.count_overlapping(
                    conn, iso(at), iso(at + length + buffer), exclude_id=appointment_id
                )
                if taken >= capacity:
                    return "slot_taken", None
                fields.update(starts_at=iso(at), ends_at=iso(at + length))
                # reminders were for the old time
                fields.update(
                    reminder_24h_message_id=None,
                    reminder_24h_at=None,
                    reminder_1h_message_id=None,
                    reminder_1h_at=None,
                )
                outcome = "rescheduled"
            if notes is not UNSET and notes != row["notes"]:
                fields["notes"] = notes
            if fields:
                fields["updated_at"] = now
                store.update(conn, appointment_id, fields)
            return outcome, {**dict(row), **fields}

        result, stored = await tdb.write_fn(write)
        if stored is None:
            assert at is not None
            alternatives = await self._next_free(tdb, rules, at, length, ALTERNATIVES)
            return BookingResult("slot_taken", at.astimezone(rules.tz), None, tuple(alternatives))
        appointment = store.public_appointment(stored, rules.tz)
        if result == "rescheduled":
            await self._notify(owner.id, appointment, rescheduled=True)
        requested = parse_iso(stored["starts_at"]).astimezone(rules.tz)
        return BookingResult(result, requested, appointment)
