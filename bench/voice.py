"""Voice: the Twilio voice webhook and the Vapi tool calls, with many appointments stored.

1. `POST /webhooks/twilio/voice`: a signed inbound call (Twilio's form, a fresh CallSid
   each, ForwardedFrom = one of the tenants' business numbers), resolved to its tenant,
   logged, and bridged through the Vapi emulator (own process, answering at once) to
   Vapi's TwiML. Latency at a fixed arrival rate (open loop), then the saturation rate (wrk).
2. `POST /api/vapi/functions` tool calls, `check_availability` and `book_appointment`, for
   calls the bridge recorded, with `--appointments` rows seeded straight into `rendez_vous`
   (SQL, in bulk): the measured tenant holds `--share` of them, two years back and its
   60-day booking horizon ahead, on its slot grid (capacity 10, about half full).

The gateway runs with DISPATCHER=off (booking confirmations are accepted, not sent).

    .venv/bin/python -m bench.voice [--appointments 100000] [--voice-rate 50] [--tool-rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx

from bench import common, profiling
from bench.common import Req
from gateway.ids import iso
from gateway.sandbox.twilio_webhooks import SIGNATURE_HEADER, sign, voice_call_params

PARIS = ZoneInfo("Europe/Paris")
HOURS = [(time(9), time(12)), (time(14), time(18))]  # the default opening hours, Mon-Fri
CAPACITY = 10
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid(at: datetime, rng: random.Random) -> str:
    value = (int(at.timestamp() * 1000) << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _grid(first: date, last: date) -> list[datetime]:
    """Every 30-minute slot start (UTC) of the default opening hours between two days."""
    slots = []
    day = first
    while day <= last:
        if day.weekday() < 5:
            for opens, closes in HOURS:
                moment = datetime.combine(day, opens, PARIS)
                end = datetime.combine(day, closes, PARIS)
                while moment + timedelta(minutes=30) <= end:
                    slots.append(moment.astimezone(UTC))
                    moment += timedelta(minutes=30)
        day += timedelta(days=1)
    return slots


def seed_appointments(db: Path, tenant_ids: list[str], total: int, share: float) -> int:
    """Bulk-insert `total` appointments: `share` for the first tenant, the rest spread evenly;
    past ones completed/cancelled/no-show, upcoming ones mostly booked; ≤ CAPACITY per slot."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    today = now.astimezone(PARIS).date()
    grid = _grid(today - timedelta(days=730), today + timedelta(days=60))
    counts = [round(total * share)]
    rest = total - counts[0]
    others = len(tenant_ids) - 1
    counts += [rest // others + (1 if n < rest % others else 0) for n in range(others)]
    rows = []
    serial = 0
    for tenant_id, count in zip(tenant_ids, counts, strict=True):
        per_slot: Counter[int] = Counter()
        for _ in range(count):
            while True:
                index = rng.randrange(len(grid))
                if per_slot[index] < CAPACITY:
                    per_slot[index] += 1
                    break
            starts = grid[index]
            if starts < now:
                status = rng.choices(("completed", "cancelled", "no_show"), (80, 10, 10))[0]
            else:
                status = rng.choices(("booked", "cancelled"), (90, 10))[0]
            created = min(now, starts - timedelta(days=rng.uniform(1, 30)))
            serial += 1
            rows.append(
                (
                    "apt_" + _ulid(created, rng),
                    tenant_id,
                    f"Client {serial}",
                    f"+336{20000000 + serial:08d}",
                    f"client{serial}@example.org" if rng.random() < 0.5 else None,
                    rng.choice(("consultation", "suivi", "première visite", None)),
                    iso(starts),
                    iso(starts + timedelta(minutes=30)),
                    status,
                    rng.choice(("voice", "api")),
                    iso(created),
                    iso(created),
                    iso(created) if status == "cancelled" else None,
                )
            )
    with common.connect(db, read_only=False) as conn:
        conn.executemany(
            "INSERT INTO rendez_vous (id, tenant_id, customer_name, customer_phone, "
            "customer_email, service, starts_at, ends_at, status, source, created_at, "
            "updated_at, cancelled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)


def _setup_tenants(gw: common.Gateway, count: int) -> list[tuple[common.Tenant, str]]:
    """Tenants with SMS and the phone channel on; (tenant, its forwarding number)."""
    out = []
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        for n in range(count):
            tenant = common.create_tenant(gw, f"bench-voice-{n:02d}")
            number = f"+331400000{n:02d}"
            http.put(
                f"/admin/tenants/{tenant.id}/channels/phone/config",
                json={"vapi_assistant_id": f"asst-bench-{n:02d}", "vapi_phone_number_id": "pn"},
                headers=gw.admin,
            ).raise_for_status()
            http.put(
                "/api/channels/phone/config",
                json={"forwarding_numbers": [number], "booking": {"capacity": CAPACITY}},
                headers=tenant.auth,
            ).raise_for_status()
            http.post(
                "/api/channels/phone/toggle", json={"enabled": True}, headers=tenant.auth
            ).raise_for_status()
            out.append((tenant, number))
    return out


def _voice_requests(gw: common.Gateway, numbers: list[str], count: int) -> list[Req]:
    path = "/webhooks/twilio/voice"
    out = []
    for n in range(count):
        params = voice_call_params(
            f"+336{30000000 + n:08d}",
            common.SHARED_NUMBER,
            common.ACCOUNT_SID,
            forwarded_from=numbers[n % len(numbers)],
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: sign(gw.url + path, params, common.AUTH_TOKEN),
        }
        out.append(Req("POST", path, headers, urlencode(params).encode()))
    return out


def _tool_request(call: dict[str, object], name: str, arguments: dict[str, object]) -> Req:
    """A tool-calls server message as Vapi sends it (VapiServerMessenger's envelope)."""
    tool_call = {
        "id": "call_" + uuid.uuid4().hex[:24],
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    message = {
        "timestamp": 1_790_000_000_000,
        "type": "tool-calls",
        "toolCallList": [tool_call],
        "toolWithToolCallList": [
            {
                "type": "function",
                "function": {"name": name, "parameters": {"type": "object", "properties": {}}},
                "messages": [],
                "toolCall": tool_call,
            }
        ],
        "artifact": {"messages": []},
        "call": call,
        "customer": call["customer"],
    }
    headers = {"Content-Type": "application/json", "x-vapi-secret": common.VAPI_SECRET}
    return Req("POST", "/api/vapi/functions", headers, json.dumps({"message": message}).encode())


def _outcomes(responses: list[httpx.Response], key: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    for response in responses:
        if response.status_code != 200:
            seen[f"http {response.status_code}"] += 1
            continue
        result = response.json()["results"][0]
        if "error" in result:
            seen["error: " + result["error"][:60]] += 1
        elif key:
            seen[json.loads(result["result"]).get(key, "?")] += 1
        else:
            seen["result"] += 1
    return seen


def _latency_row(name: str, r: common.LoadResult) -> list[object]:
    return [
        name,
        f"{r.requests:,}",
        f"{r.p50_ms:.1f}",
        f"{r.p90_ms:.1f}",
        f"{r.p99_ms:.1f}",
        f"{r.max_ms:.1f}",
        f"{r.errors:,}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appointments", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.4, help="the measured tenant's share")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--voice-rate", type=float, default=50.0, help="calls per second")
    parser.add_argument("--voice-seconds", type=float, default=20.0)
    parser.add_argument("--tool-rate", type=float, default=50.0, help="tool calls per second")
    parser.add_argument("--tool-seconds", type=float, default=10.0)
    parser.add_argument("--saturation-seconds", type=float, default=8.0)
    parser.add_argument("--profile", action="store_true", help="py-spy the tool calls")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load")
    args = parser.parse_args()
    if not 2 <= args.tenants <= 100:
        parser.error("--tenants must be between 2 and 100")
    pinning = common.set_pinning(not args.no_pin)
    profile_lines: list[str] = []

    with common.Workspace() as ws:
        vapi = common.start_vapi(ws)
        port = common.free_port()
        settings = {"DISPATCHER": "off", "VAPI_API_BASE": vapi}
        gw = common.start_gateway(ws, port=port, **settings)
        with common.timed(f"{args.tenants} tenants with the phone channel"):
            tenants = _setup_tenants(gw, args.tenants)
        ws.stop(gw.proc)
        with common.timed(f"seeding {args.appointments:,} appointments"):
            seeded = seed_appointments(
                gw.db_path, [t.id for t, _ in tenants], args.appointments, args.share
            )
        gw = common.start_gateway(ws, port=port, **settings)
        numbers = [number for _, number in tenants]

        voice_count = round(args.voice_rate * args.voice_seconds)
        asyncio.run(common.open_loop(gw.url, _voice_requests(gw, numbers, 100), rate=50, count=100))
        with common.timed(f"voice: {voice_count:,} calls at {args.voice_rate:g}/s"):
            voice, voice_responses = asyncio.run(
                common.open_loop(
                    gw.url,
                    _voice_requests(gw, numbers, voice_count),
                    rate=args.voice_rate,
                    count=voice_count,
                )
            )
        bridged = sum("<Stream" in r.text for r in voice_responses)
        saturation = common.measure(
            "voice saturation",
            gw.url,
            _voice_requests(gw, numbers, 8000),
            seconds=args.saturation_seconds,
            warmup=0,
            connections=8,
            workdir=ws.dir,
        )

        measured, _ = tenants[0]
        with common.connect(gw.db_path) as conn:
            calls = conn.execute(
                "SELECT vapi_call_id, from_number, assistant_id FROM call_logs "
                "WHERE tenant_id = ? AND vapi_call_id IS NOT NULL LIMIT 200",
                (measured.id,),
            ).fetchall()
            held = conn.execute(
                "SELECT COUNT(*) FROM rendez_vous WHERE tenant_id = ?", (measured.id,)
            ).fetchone()[0]
        call_objects: list[dict[str, object]] = [
            {
                "id": vapi_call_id,
                "orgId": "org-bench",
                "type": "inboundPhoneCall",
                "assistantId": assistant_id,
                "customer": {"number": caller},
                "status": "in-progress",
            }
            for vapi_call_id, caller, assistant_id in calls
        ]
        today = datetime.now(PARIS).date()
        start = today + timedelta(days=1)
        free = httpx.get(
            gw.url + "/api/availability",
            params={"start": start.isoformat(), "end": (start + timedelta(days=27)).isoformat()},
            headers=measured.auth,
            timeout=30,
        ).json()
        free_slots = [slot for day in free["days"] for slot in day["slots"]]
        tool_count = round(args.tool_rate * args.tool_seconds)
        availability_requests = [
            _tool_request(
                call_objects[n % len(call_objects)],
                "check_availability",
                {"date": (today + timedelta(days=1 + n % 21)).isoformat()},
            )
            for n in range(tool_count + 40)
        ]
        booking_requests = [
            _tool_request(
                call_objects[n % len(call_objects)],
                "book_appointment",
                {
                    "name": f"Caller {n}",
                    "start": free_slots[(n // 2) % len(free_slots)],
                    "phone": f"+336{40000000 + n:08d}",
                    "service": "consultation",
                },
            )
            for n in range(tool_count + 40)
        ]
        serial_availability = asyncio.run(
            common.count_loop(gw.url, availability_requests[-40:], count=40, connections=1)
        )
        serial_booking = asyncio.run(
            common.count_loop(gw.url, booking_requests[-40:], count=40, connections=1)
        )
        profiler = None
        if args.profile:
            raw_path = profiling.OUT / "tools-profile.txt"
            profiler = threading.Thread(
                target=profiling.record,
                args=(gw.proc.pid, args.tool_seconds * 2, raw_path),
                daemon=True,
            )
            profiler.start()
        with common.timed(f"check_availability: {tool_count:,} at {args.tool_rate:g}/s"):
            availability, availability_responses = asyncio.run(
                common.open_loop(
                    gw.url,
                    availability_requests[:tool_count],
                    rate=args.tool_rate,
                    count=tool_count,
                )
            )
        with common.timed(f"book_appointment: {tool_count:,} at {args.tool_rate:g}/s"):
            booking, booking_responses = asyncio.run(
                common.open_loop(
                    gw.url, booking_requests[:tool_count], rate=args.tool_rate, count=tool_count
                )
            )
        if profiler is not None:
            profiler.join(args.tool_seconds * 2 + 60)
            profile_lines = profiling.summarize(
                (profiling.OUT / "tools-profile.txt").read_text(), 20
            )
        rss = common.vm_status(gw.proc.pid)

    availability_outcomes = _outcomes(availability_responses, "")
    booking_outcomes = _outcomes(booking_responses, "status")
    lines = [
        f"Gateway: DISPATCHER=off, {args.tenants} tenants with the phone channel on (SMS on too: "
        "a booking also accepts its confirmation SMS); Vapi emulator in its own process, no "
        f"added latency. {seeded:,} appointments seeded in `rendez_vous` by SQL, "
        f"{held:,} of them the measured tenant's (capacity {CAPACITY} per 30-minute slot, "
        f"{len(free_slots):,} free slots in its next 4 weeks). Latencies from an open-loop "
        "httpx generator (counted from each request's scheduled time). "
        f"{pinning}.",
        "",
        *common.table(
            ["request", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"],
            [
                _latency_row(f"voice webhook at {args.voice_rate:g}/s", voice),
                _latency_row(f"check_availability at {args.tool_rate:g}/s", availability),
                _latency_row(f"book_appointment at {args.tool_rate:g}/s", booking),
                _latency_row("check_availability one at a time", serial_availability),
                _latency_row("book_appointment one at a time", serial_booking),
            ],
        ),
        "",
        f"- voice: {bridged:,} of {len(voice_responses):,} answered with Vapi's bridge TwiML; "
        f"at saturation ({saturation.tool}, {args.saturation_seconds:g} s) "
        f"{saturation.rps:,.0f} calls/s, p50 {saturation.p50_ms:.1f} ms, "
        f"p99 {saturation.p99_ms:.1f} ms, errors {saturation.errors}",
        "- check_availability answers: "
        + ", ".join(f"{k} {v:,}" for k, v in availability_outcomes.most_common()),
        "- book_appointment answers: "
        + ", ".join(f"{k} {v:,}" for k, v in booking_outcomes.most_common()),
        f"- targets: voice p99 < 25 ms **{'met' if voice.p99_ms < 25 else 'missed'}**; "
        f"tool calls p99 < 20 ms: check_availability "
        f"**{'met' if availability.p99_ms < 20 else 'missed'}**, book_appointment "
        f"**{'met' if booking.p99_ms < 20 else 'missed'}**",
        f"- gateway VmRSS after the run {rss.get('VmRSS', 0) / 1024:.0f} MiB "
        f"(peak {rss.get('VmHWM', 0) / 1024:.0f} MiB)",
    ]
    if profile_lines:
        lines += ["", "py-spy of the gateway during the tool calls (GIL-holding samples):", ""]
        lines += profile_lines
    title = "Voice webhook and Vapi tool calls" + (f" ({args.label})" if args.label else "")
    common.append_results(title, lines, record=not args.no_record)


if __name__ == "__main__":
    main()
