"""Tenant booking endpoints: free slots, appointments (list, book, read, change)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator
from starlette.responses import Response

from gateway.errors import Conflict, ValidationFailed
from gateway.routing import Ctx, Endpoint, json_response
from gateway.services.booking import UNSET
from gateway.services.slots import BookingResult
from gateway.validation import E164, BodyText, Day, EmailAddress, HeaderText, Instant, RequestModel

Line = Annotated[HeaderText, Field(min_length=1, max_length=200)]
Notes = Annotated[BodyText, Field(max_length=2000)]


class AvailabilityQuery(RequestModel):
    date: Day | None = Field(None, description="One day (YYYY-MM-DD)")
    start: Day | None = Field(None, description="First day of a range")
    end: Day | None = Field(None, description="Last day of a range (at most 31 days)")
    duration: int | None = Field(
        None, ge=1, le=1440, description="Minutes, a multiple of the slot length"
    )


class AppointmentQuery(RequestModel):
    status: Literal["booked", "cancelled", "completed", "no_show"] | None = None
    phone: E164 | None = None
    starts_from: Instant | None = Field(
        None, alias="from", description="Starting at or after (inclusive)"
    )
    starts_before: Instant | None = Field(
        None, alias="to", description="Starting before (exclusive)"
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the last page")


class AppointmentCreate(RequestModel):
    customer_name: Line
    customer_phone: E164
    customer_email: EmailAddress | None = None
    service: Line | None = None
    starts_at: Instant = Field(examples=["2026-12-01T09:00:00+01:00"])
    duration_minutes: int | None = Field(
        None, ge=1, le=1440, description="Defaults to the slot length"
    )
    call_id: Annotated[HeaderText, Field(min_length=1, max_length=100)] | None = None
    notes: Notes | None = None


class AppointmentPatch(RequestModel):
    # as in a JSON merge patch, "" clears the notes like null
    blank_clears: ClassVar[frozenset[str]] = frozenset({"notes"})
    status: Literal["cancelled", "completed", "no_show"] | None = None
    starts_at: Instant | None = Field(None, description="Move the appointment")
    notes: Notes | None = Field(None, description='null (or "") clears the notes')

    @model_validator(mode="after")
    def _one_change(self) -> AppointmentPatch:
        if self.status is not None and self.starts_at is not None:
            raise ValueError("give status or starts_at, not both")
        if "status" in self.model_fields_set and self.status is None:
            raise ValueError("status cannot be null")
        if "starts_at" in self.model_fields_set and self.starts_at is None:
            raise ValueError("starts_at cannot be null")
        return self


def _slot_taken(result: BookingResult) -> Conflict:
    return Conflict(
        result.sentence(),
        code="slot_taken",
        details={
            "starts_at": result.requested.isoformat(),
            "alternatives": result.public_alternatives(),
        },
    )


async def availability(ctx: Ctx) -> Response:
    query: AvailabilityQuery = ctx.query
    if query.date is not None and (query.start is not None or query.end is not None):
        raise ValidationFailed.one("date", "give date, or start and end, not both")
    first = query.date or query.start
    if first is None:
        raise ValidationFailed.one("date", "give date, or start and end")
    found = await ctx.gw.booking.availability(ctx.tenant.tenant, first, query.end, query.duration)
    return json_response(found.public())


async def list_appointments(ctx: Ctx) -> Response:
    query: AppointmentQuery = ctx.query
    page = await ctx.gw.booking.list(
        ctx.tenant.tenant,
        status=query.status,
        phone=query.phone,
        starts_from=query.starts_from,
        starts_before=query.starts_before,
        limit=query.limit,
        cursor=query.cursor,
    )
    return json_response(page)


async def create_appointment(ctx: Ctx) -> Response:
    body: AppointmentCreate = ctx.body
    result = await ctx.gw.booking.book(
        ctx.tenant.tenant,
        name=body.customer_name,
        phone=body.customer_phone,
        email=body.customer_email,
        service=body.service,
        start=body.starts_at,
        duration=body.duration_minutes,
        source="api",
        call_id=body.call_id,
        notes=body.notes,
    )
    if result.status == "slot_taken":
        raise _slot_taken(result)
    if result.status == "already_booked":
        return json_response(result.appointment, headers={"Idempotent-Replayed": "true"})
    return json_response(result.appointment, status=201)


async def get_appointment(ctx: Ctx) -> Response:
    return json_response(await ctx.gw.booking.get(ctx.tenant.tenant, ctx.param("appointment_id")))


async def update_appointment(ctx: Ctx) -> Response:
    body: AppointmentPatch = ctx.body
    result = await ctx.gw.booking.update(
        ctx.tenant.tenant,
        ctx.param("appointment_id"),
        status=body.status,
        starts_at=body.starts_at,
        notes=body.notes if "notes" in body.model_fields_set else UNSET,
    )
    if result.status == "slot_taken":
        raise _slot_taken(result)
    return json_response(result.appointment)


_TAGS = ["booking"]
ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/availability",
        availability,
        "tenant",
        "Free slots of one day or of a range of up to 31 days",
        scope="read",
        tags=_TAGS,
        query=AvailabilityQuery,
    ),
    Endpoint(
        "GET",
        "/api/appointments",
        list_appointments,
        "tenant",
        "List appointments, chronologically by start",
        scope="read",
        tags=_TAGS,
        query=AppointmentQuery,
    ),
    Endpoint(
        "POST",
        "/api/appointments",
        create_appointment,
        "tenant",
        "Book an appointment",
        scope="send",
        tags=_TAGS,
        body=AppointmentCreate,
        status=201,
        responses={
            200: "The same customer already has this appointment (idempotent replay)",
            409: "slot_taken: no place left at that time; details.alternatives",
            422: "Invalid fields, or a start outside the booking rules (starts_at)",
        },
    ),
    Endpoint(
        "GET",
        "/api/appointments/{appointment_id}",
        get_appointment,
        "tenant",
        "One appointment",
        scope="read",
        tags=_TAGS,
    ),
    Endpoint(
        "PATCH",
        "/api/appointments/{appointment_id}",
        update_appointment,
        "tenant",
        "Cancel, close, move or annotate an appointment",
        scope="send",
        tags=_TAGS,
        body=AppointmentPatch,
        responses={
            409: "slot_taken (details.alternatives), or a status change that is not allowed",
        },
    ),
]
