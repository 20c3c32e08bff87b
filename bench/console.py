"""Console dashboard: server time of the page and of each htmx section with a million messages.

The database is seeded by bench/seed.py (1,000 tenants, Zipf volumes over 90 days) plus calls
(one for every 30 messages of the largest and the median tenant, over the same 90 days, with
appointments for a third of the bridged ones). Two tenants are made through the API: the
largest (rank 1, about 16% of all messages) and the median one (rank 500). The gateway
(DISPATCHER=off) is then started on it, each tenant signs in to the console, and for each
period (last 7, 30 and 90 days) the page and each section are asked for one at a time,
`--requests` times each after two warm-up requests:

- page: `/console/dashboard?period=N` (the frame: the sections load themselves);
- kpis: message and call KPIs with the previous period (`message_metrics`, `call_metrics`);
- delivery: the delivery rate day by day (`daily_delivery`);
- money: billed / cost / margin by channel (`message_metrics`, `call_metrics` again);
- unprofitable: the worst 20 items and the loss share (`unprofitable`);
- contact: the timeline of the tenant's busiest recipient (no period).

The messages are rolled up (the job's catch-up from nothing, timed) before the gateway starts.
Server time is the gateway's own access-log `duration_ms` of each request (found by its
X-Request-Id), from the first byte in to the last byte out; the client's latency is kept
beside it. Then the analytics statements are run alone on a read-only connection for the
largest tenant, with their query plans, to show where the time goes.

    .venv/bin/python -m bench.console [--rows 1000000] [--tenants 1000] [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench import common, seed
from gateway.db import Database
from gateway.ids import iso
from gateway.services import analytics, rollups
from gateway.store import analytics as store
from gateway.store import rollups as rollup_store
from gateway.store.tenant_scope import TenantDB

SECTIONS = ("page", "kpis", "delivery", "money", "unprofitable")
PERIODS = (7, 30, 90)
TARGET_MS = 100.0
CALLS_PER_MESSAGES = 30


@dataclass
class Timings:
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)

    def cell(self) -> str:
        p50 = common.percentile(self.server_ms, 50)
        p95 = common.percentile(self.server_ms, 95)
        return f"{p50:,.1f} / {p95:,.1f}"


def seed_calls(db: Path, tenant_ids: list[str], days: int = 90) -> int:
    """Calls for these tenants, one per CALLS_PER_MESSAGES of their messages, over the last
    `days` days: bridged 85% (a third of them booked an appointment), fallbacks 15%."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    made = 0
    with common.connect(db, read_only=False) as conn:
        for tenant_id in tenant_ids:
            (messages,) = conn.execute(
                "SELECT COUNT(*) FROM channel_messages_log WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            calls, appointments = [], []
            for n in range(messages // CALLS_PER_MESSAGES):
                created = now - timedelta(seconds=rng.random() * days * 86400)
                bridged = rng.random() < 0.85
                duration = rng.uniform(20, 600) if bridged else rng.uniform(5, 40)
                cost = round(duration / 60 * 0.05, 4)
                billed = round(duration / 60 * 0.15, 4) if bridged else 0.0
                call_id = f"call_bench_{tenant_id[-8:]}_{n:07d}"
                calls.append(
                    (
                        call_id,
                        tenant_id,
                        f"CA{rng.getrandbits(128):032x}",
                        f"+336{rng.randrange(10**8):08d}",
                        common.SHARED_NUMBER,
                        "bridged" if bridged else "fallback_dial",
                        duration,
                        cost,
                        billed,
                        round(billed - cost, 4),
                        iso(created),
                        iso(created),
                    )
                )
                if bridged and rng.random() < 1 / 3:
                    starts = created + timedelta(days=rng.randrange(1, 15))
                    appointments.append(
                        (
                            f"apt_bench_{tenant_id[-8:]}_{n:07d}",
                            tenant_id,
                            "Client",
                            f"+336{rng.randrange(10**8):08d}",
                            iso(starts),
                            iso(starts + timedelta(minutes=30)),
                            call_id,
                            iso(created),
                            iso(created),
                        )
                    )
            conn.executemany(
                "INSERT INTO call_logs (id, tenant_id, call_sid, from_number, to_number, status, "
                "outcome, duration_seconds, provider_cost, billed_cost, margin, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, 'completed', ?, ?, ?, ?, ?, ?, ?)",
                calls,
            )
            conn.executemany(
                "INSERT INTO rendez_vous (id, tenant_id, customer_name, customer_phone, "
                "starts_at, ends_at, source, call_id, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'voice', ?, ?, ?)",
                appointments,
            )
            made += len(calls)
    return made


def sign_in(http: httpx.Client, key: str) -> None:
    form = http.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text[:500]
    signed = http.post("/console/sign-in", data={"api_key": key, "csrf_token": token.group(1)})
    assert signed.status_code == 303, signed.text[:500]


def busiest_contact(db: Path, tenant_id: str) -> str:
    with common.connect(db) as conn:
        row = conn.execute(
            "SELECT to_address FROM channel_messages_log WHERE tenant_id = ? AND direction = "
            "'outbound' AND channel = 'sms' GROUP BY to_address ORDER BY COUNT(*) DESC LIMIT 1",
            (tenant_id,),
        ).fetchone()
    return str(row[0])


def durations(log: Path) -> dict[str, float]:
    """request id → duration_ms, from the gateway's JSON access log."""
    found = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"duration_ms"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "request_id" in record:
            found[str(record["request_id"])] = float(record["duration_ms"])
    return found


def measure(
    http: httpx.Client, path: str, tag: str, count: int, htmx: bool, sink: Timings
) -> list[str]:
    """`count` requests one at a time after two warm-ups; the ids of the measured ones."""
    headers = {"HX-Request": "true"} if htmx else {}
    ids = []
    for n in range(count + 2):
        request_id = f"{tag}{n:04d}"
        began = time.perf_counter()
        response = http.get(path, headers={**headers, "X-Request-Id": request_id})
        elapsed = (time.perf_counter() - began) * 1000
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        if n >= 2:
            ids.append(request_id)
            sink.client_ms.append(elapsed)
    return ids


async def _read_times(db_path: Path, tenant_id: str, days: int) -> list[tuple[str, float, str]]:
    db = Database(db_path, read_connections=1)
    db.start()
    try:
        tdb = TenantDB(db, tenant_id)
        period = analytics.resolve_period(
            (datetime.now(UTC) - timedelta(days=days - 1)).date(), None, "Europe/Paris"
        )
        spans = [(period.start, period.end), (period.previous.start, period.previous.end)]
        names = [figure.name for figure in rollup_store.FIGURES]
        days_of = [(s, e) for _, s, e in analytics.period_days(period, "Europe/Paris")]
        window = {**period.window().params(), "tenant_id": tenant_id}
        span = {"start": iso(period.start), "end": iso(period.end), "tenant_id": tenant_id}
        reads: list[tuple[str, Callable[[], Awaitable[object]], str]] = [
            (
                "message figures (both periods)",
                lambda: rollups.figures(tdb, spans, names, {}, recipients=True),
                "",
            ),
            (
                "message breakdown (both periods)",
                lambda: rollups.groups(tdb, spans, names[:5], {}, ("channel", "message_type")),
                "",
            ),
            ("days (current period)", lambda: rollups.counts(tdb, days_of, {}), ""),
            (
                "unprofitable (current period)",
                lambda: db.fetchall(store.UNPROFITABLE_SQL, {**span, "limit": 20}),
                store.UNPROFITABLE_SQL,
            ),
            ("call totals", lambda: db.fetchall(store.CALL_TOTALS_SQL, window), ""),
        ]
        out = []
        for name, read, sql in reads:
            best = float("inf")
            for _ in range(3):
                began = time.perf_counter()
                await read()
                best = min(best, time.perf_counter() - began)
            plan = ""
            if sql:
                params = {**span, "limit": 20}
                rows = await db.fetchall("EXPLAIN QUERY PLAN " + sql, params)
                plan = "; ".join(sorted({str(row[3]) for row in rows}))
            out.append((name, best * 1000, plan))
        return out
    finally:
        await db.close()


def statement_times(db: Path, tenant_id: str, days: int) -> list[tuple[str, float, str]]:
    """Each analytics read of the dashboard, alone, for the tenant and the last `days` days:
    (name, best of three in ms, the query plan of a plain statement)."""
    return asyncio.run(_read_times(db, tenant_id, days))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=30, help="measured requests per cell")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    args = parser.parse_args()
    if args.tenants < 500:
        parser.error("need --tenants ≥ 500 (the median tenant is rank 500)")
    pinning = common.set_pinning(not args.no_pin)

    with common.Workspace() as ws:
        gw = common.start_gateway(ws, DISPATCHER="off")
        top = common.create_tenant(gw, "bench-console-top", sms=False)
        median = common.create_tenant(gw, "bench-console-median", sms=False)
        ws.stop(gw.proc)
        with common.connect(gw.db_path, read_only=False) as conn:
            others = seed.make_tenants(conn, args.tenants - 2, "bench-console")
        ids = [top.id, *others[:498], median.id, *others[498:]]
        with common.timed(f"seeding {args.rows:,} messages"):
            seeded_s = seed.insert(gw.db_path, seed.plan(ids), args.rows)
        calls = seed_calls(gw.db_path, [top.id, median.id])
        steps, rolled_s = common.roll_up(gw.db_path)
        common.log(f"rolled up in {rolled_s:.1f} s ({steps} steps)")
        with common.connect(gw.db_path) as conn:
            rows_of = {
                t.slug: conn.execute(
                    "SELECT COUNT(*) FROM channel_messages_log WHERE tenant_id = ?", (t.id,)
                ).fetchone()[0]
                for t in (top, median)
            }

        gw = common.start_gateway(ws, DISPATCHER="off")
        load_before = os.getloadavg()[0]
        cells: dict[tuple[str, str, str], Timings] = {}
        tags: dict[str, tuple[str, str, str]] = {}
        for who, tenant in (("largest", top), ("median", median)):
            contact = busiest_contact(gw.db_path, tenant.id)
            with httpx.Client(base_url=gw.url, timeout=120) as http:
                sign_in(http, tenant.key)
                plan: list[tuple[str, str, str, bool]] = [
                    (
                        f"{days} days",
                        name,
                        f"/console/dashboard{'' if name == 'page' else '/' + name}?period={days}",
                        name != "page",
                    )
                    for days in PERIODS
                    for name in SECTIONS
                ]
                query = httpx.QueryParams({"contact": contact})
                plan.append(("any", "contact", f"/console/dashboard/contact?{query}", True))
                for period, name, path, htmx in plan:
                    key = (who, period, name)
                    cells[key] = Timings()
                    tag = f"bench-{who}-{period.split()[0]}-{name}-"
                    common.log(f"{who}: {name}, {period}")
                    for request_id in measure(http, path, tag, args.requests, htmx, cells[key]):
                        tags[request_id] = key
        load = (load_before, os.getloadavg()[0])
        time.sleep(0.5)  # the last access-log lines
        logged = durations(gw.proc.log_path)
        for request_id, key in tags.items():
            cells[key].server_ms.append(logged[request_id])
        ws.stop(gw.proc)
        explained = {days: statement_times(gw.db_path, top.id, days) for days in (30, 90)}
        size_mib = gw.db_path.stat().st_size / 2**20

    lines = _report(
        args, cells, explained, rows_of, calls, (seeded_s, rolled_s), size_mib, pinning, load
    )
    title = "Console dashboard: server time with 1 million messages"
    common.append_results(
        title + (f" ({args.label})" if args.label else ""), lines, record=not args.no_record
    )


def _report(
    args: argparse.Namespace,
    cells: dict[tuple[str, str, str], Timings],
    explained: dict[int, list[tuple[str, float, str]]],
    rows_of: dict[str, int],
    calls: int,
    timings: tuple[float, float],
    size_mib: float,
    pinning: str,
    load: tuple[float, float],
) -> list[str]:
    seeded_s, rolled_s = timings
    table_rows = []
    for who in ("largest", "median"):
        for days in PERIODS:
            period = f"{days} days"
            table_rows.append(
                [f"{who}, last {period}", *(cells[(who, period, n)].cell() for n in SECTIONS)]
            )
        table_rows.append([f"{who}, contact timeline", cells[(who, "any", "contact")].cell()])
    slow = sorted(
        (
            (common.percentile(t.server_ms, 95), key)
            for key, t in cells.items()
            if common.percentile(t.server_ms, 95) >= TARGET_MS
        ),
        reverse=True,
    )
    met = "met" if not slow else "missed"
    over = ", ".join(f"{who} {name} ({period}) {p95:,.0f} ms" for p95, (who, period, name) in slow)
    lines = [
        f"{args.tenants:,} tenants, {args.rows:,} messages seeded by bench/seed.py (Zipf volumes "
        f"over 90 days; seeded in {seeded_s:.0f} s, file {size_mib:,.0f} MiB) and {calls:,} "
        f"calls; the largest tenant holds {rows_of['bench-console-top']:,} messages, the median "
        f"one {rows_of['bench-console-median']:,}. Rolled up (`gateway rollups`'s catch-up, "
        f"from nothing) in {rolled_s:.0f} s. Gateway: DISPATCHER=off, fresh process, page "
        "cache warm from the seeding. One request at a time, signed in to the console, "
        f"{args.requests} measured after 2 warm-ups per cell; server time from the access log's "
        f"duration_ms. {pinning}. Load average (1 min) when measuring began and ended: "
        f"{load[0]:.1f} and {load[1]:.1f} (other work on the machine slows every cell).",
        "",
        *common.table(
            ["tenant, period", *(f"{n} p50 / p95 ms" for n in SECTIONS)],
            table_rows,
        ),
        "",
        f"- each page and section under {TARGET_MS:.0f} ms (p95): **{met}**"
        + (f"; over it: {over}" if slow else ""),
    ]
    for days, statements in explained.items():
        lines.append(
            f"- the largest tenant's reads alone (in-process engine, best of 3), last {days} days: "
            + "; ".join(f"{name} {ms:,.0f} ms" for name, ms, _ in statements)
        )
    lines.append("- query plans of the plain statements (last 30 days):")
    lines += [f"  - {name}: `{plan}`" for name, _, plan in explained[30] if plan]
    return lines


if __name__ == "__main__":
    main()
