"""The functions the voice assistants call, with their JSON schemas (used both to validate
the arguments and to provision the assistants)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from gateway.errors import ApiError, NotFound
from gateway.services.qualification import Line, ProspectIn, score
from gateway.services.vapi_server import (
    ToolArguments,
    ToolContext,
    ToolError,
    ToolHandler,
    parse_arguments,
)
from gateway.store import crm
from gateway.store.tenant_scope import ScopedConnection
from gateway.validation import E164, BodyText, Day, EmailAddress, HeaderText, Instant


def _leading_date(value: Any) -> Any:
    # an assistant may pass a whole timestamp where a day is asked: its date is meant
    return value[:10] if isinstance(value, str) else value


ToolDay = Annotated[Day, BeforeValidator(_leading_date)]


class CheckAvailability(ToolArguments):
    date: ToolDay | None = Field(None, description="Day to check, YYYY-MM-DD")
    start_date: ToolDay | None = Field(None, description="First day of a range, YYYY-MM-DD")
    end_date: ToolDay | None = Field(None, description="Last day of a range, YYYY-MM-DD")
    duration_minutes: Annotated[int, Field(ge=5, le=480)] | None = None


class BookAppointment(ToolArguments):
    name: Annotated[HeaderText, Field(min_length=1, max_length=200)]
    phone: E164 | None = Field(None, description="Defaults to the caller's number")
    email: EmailAddress | None = None
    service: Line | None = None
    start: Instant = Field(description="ISO-8601 start with offset, from availability")
    duration_minutes: Annotated[int, Field(ge=5, le=480)] | None = None
    notes: Annotated[BodyText, Field(max_length=2000)] | None = None


class CancelAppointment(ToolArguments):
    appointment_id: Annotated[str, Field(max_length=100)] | None = None
    phone: E164 | None = Field(
        None, description="The caller's number (only the caller's appointments can change)"
    )
    start: Instant | None = Field(None, description="Which appointment, if several")


class RescheduleAppointment(CancelAppointment):
    new_start: Instant


class CreateTicket(ToolArguments):
    subject: Annotated[HeaderText, Field(min_length=1, max_length=200)]
    description: Annotated[BodyText, Field(max_length=5000)] | None = None
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    name: Line | None = None
    phone: E164 | None = None
    email: EmailAddress | None = None


async def qualify_prospect(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    prospect: ProspectIn = parse_arguments(ProspectIn, arguments, ctx)
    phone = prospect.phone or await ctx.caller()
    points = score(
        prospect if prospect.phone or not phone else prospect.model_copy(update={"phone": phone})
    )
    fields = {
        "contact_name": prospect.name,
        "contact_phone": phone,
        "contact_email": prospect.email,
        "project": prospect.project,
        "property_type": prospect.property_type,
        "location": prospect.location,
        "budget": prospect.budget,
        "timeline": prospect.timeline,
        "score": points,
        "call_id": ctx.call_id,
        "notes": prospect.notes,
    }

    def write(conn: ScopedConnection) -> dict[str, Any]:
        return crm.insert_prospect(conn, fields)

    saved = await ctx.principal.db.write_fn(write)
    return f"Prospect recorded (score {points}/100). Reference {saved['id']}."


async def create_ticket(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    ticket: CreateTicket = parse_arguments(CreateTicket, arguments, ctx)
    fields = {
        "contact_name": ticket.name,
        "contact_phone": ticket.phone or await ctx.caller(),
        "contact_email": ticket.email,
        "subject": ticket.subject,
        "description": ticket.description,
        "priority": ticket.priority,
        "call_id": ctx.call_id,
    }

    def write(conn: ScopedConnection) -> dict[str, Any]:
        return crm.insert_ticket(conn, fields)

    saved = await ctx.principal.db.write_fn(write)
    return f"Ticket {saved['id']} opened with {ticket.priority} priority."


def _say(exc: ApiError) -> ToolError:
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    if fields:
        return ToolError("; ".join(f"{f['field']} {f['message']}" for f in fields))
    return ToolError(exc.message)


async def check_availability(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    args: CheckAvailability = parse_arguments(CheckAvailability, arguments, ctx)
    first = args.date or args.start_date
    last = args.end_date if not args.date else first
    if first is None:
        rules = await ctx.booking.rules(ctx.principal.db)
        first = rules.today
    try:
        found = await ctx.booking.availability(ctx.principal.db, first, last, args.duration_minutes)
    except ApiError as exc:
        raise _say(exc) from None
    public = found.public()
    return json.dumps(
        {"sentence": public["sentence"], "slots": [s.isoformat() for s in found.slots][:20]},
        ensure_ascii=False,
    )


async def book_appointment(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    args: BookAppointment = parse_arguments(BookAppointment, arguments, ctx)
    phone = args.phone or await ctx.caller()
    if not phone:
        raise ToolError("the caller's phone number is needed to book")
    try:
        result = await ctx.booking.book(
            ctx.principal.db,
            name=args.name,
            phone=phone,
            start=args.start,
            email=args.email,
            service=args.service,
            duration=args.duration_minutes,
            source="voice",
            call_id=ctx.call_id,
            notes=args.notes,
        )
    except ApiError as exc:
        raise _say(exc) from None
    return json.dumps(
        {
            "status": result.status,
            "sentence": result.sentence(),
            "appointment_id": (result.appointment or {}).get("id"),
            "alternatives": result.public_alternatives(),
        },
        ensure_ascii=False,
    )


_UNKNOWN_CALLER = (
    "appointments can only be changed from the phone number they were booked with, and the "
    "number of this call is unknown"
)
_OTHER_NUMBER = "only appointments booked with the number you are calling from can be changed"
_NOT_THE_CALLERS = (
    "no upcoming appointment with that reference was found for the number you are calling from"
)


async def _caller_appointment(ctx: ToolContext, args: CancelAppointment) -> dict[str, Any]:
    """The caller's own appointment: by id (refused alike when it does not exist or is
    someone else's, so an id reveals nothing), else their next one or the one at `start`."""
    caller = await ctx.caller()
    if caller is None:
        raise ToolError(_UNKNOWN_CALLER)
    if args.phone is not None and args.phone != caller:
        raise ToolError(_OTHER_NUMBER)
    booking = ctx.booking
    try:
        if args.appointment_id:
            try:
                found: dict[str, Any] | None = await booking.get(
                    ctx.principal.db, args.appointment_id
                )
            except NotFound:
                found = None
            if found is None or found["customer_phone"] != caller:
                raise ToolError(_NOT_THE_CALLERS)
            return found
        found = await booking.find_booked(ctx.principal.db, caller, args.start)
    except ApiError as exc:
        raise _say(exc) from None
    if found is None:
        raise ToolError("no upcoming appointment was found for the number you are calling from")
    return found


async def cancel_appointment(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    args: CancelAppointment = parse_arguments(CancelAppointment, arguments, ctx)
    appointment = await _caller_appointment(ctx, args)
    try:
        cancelled = await ctx.booking.cancel(ctx.principal.db, appointment["id"])
    except ApiError as exc:
        raise _say(exc) from None
    return f"The appointment of {cancelled['starts_at']} is cancelled."


async def reschedule_appointment(ctx: ToolContext, arguments: dict[str, Any]) -> str:
    args: RescheduleAppointment = parse_arguments(RescheduleAppointment, arguments, ctx)
    appointment = await _caller_appointment(ctx, args)
    try:
        result = await ctx.booking.reschedule(ctx.principal.db, appointment["id"], args.new_start)
    except ApiError as exc:
        raise _say(exc) from None
    return json.dumps(
        {
            "status": result.status,
            "sentence": result.sentence(),
            "alternatives": result.public_alternatives(),
        },
        ensure_ascii=False,
    )


TOOLS: dict[str, ToolHandler] = {
    "check_availability": check_availability,
    "book_appointment": book_appointment,
    "cancel_appointment": cancel_appointment,
    "reschedule_appointment": reschedule_appointment,
    "qualify_prospect": qualify_prospect,
    "create_ticket": create_ticket,
}
TOOL_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "check_availability": (CheckAvailability, "Free appointment slots for a day or a range"),
    "book_appointment": (BookAppointment, "Book an appointment at a free slot"),
    "cancel_appointment": (CancelAppointment, "Cancel the caller's appointment"),
    "reschedule_appointment": (RescheduleAppointment, "Move the caller's appointment"),
    "qualify_prospect": (ProspectIn, "Record a qualified real-estate prospect"),
    "create_ticket": (CreateTicket, "Open a support ticket"),
}
