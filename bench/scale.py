"""Scale: the same measurements with `--small` and then `--rows` messages in the database.

The database is seeded by bench/seed.py (bulk SQL into channel_messages_log, 1,000 tenants,
Zipf volumes, 90 days). Two of the tenants are made through the API so they have keys: the
largest (rank 1, about 16% of all messages) and a median one (rank 500). At each size the
gateway (DISPATCHER=off) is started fresh on the database and measured:

- send latency: `POST /api/channels/sms/send` for the largest tenant at a fixed rate (open
  loop), then its saturation rate (wrk) — it must stay flat as the table grows;
- `GET /api/metrics/messages` (30 days compared with the 30 before), one request at a time,
  for the largest and the median tenant: p50/p95;
- resident memory (VmRSS from /proc/<pid>/status, sampled every 0.25 s, and VmHWM) while
  sends (wrk) and metrics requests (4 in flight) run together.

    .venv/bin/python -m bench.scale [--rows 1000000] [--small 10000] [--tenants 1000]

Seeding a million rows takes a minute or two; the whole run about five minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import common, seed
from bench.common import Req


@dataclass
class Phase:
    rows: int
    window_rows: int = 0
    send_fixed: common.LoadResult | None = None
    send_max: common.LoadResult | None = None
    metrics_top: common.LoadResult | None = None
    metrics_median: common.LoadResult | None = None
    metrics_loaded: common.LoadResult | None = None
    rss_peak_kib: int = 0
    query_ms: dict[str, float] = field(default_factory=dict)
    hwm_kib: int = 0
    notes: list[str] = field(default_factory=list)


def _send_requests(tenant: common.Tenant, count: int, tag: str) -> list[Req]:
    headers = {"Content-Type": "application/json", **tenant.auth}
    return [
        Req(
            "POST",
            "/api/channels/sms/send",
            {**headers, "Idempotency-Key": f"scale-{tag}-{n}"},
            json.dumps(common.sms_payload(f"+336{12000000 + n % 5000:08d}")).encode(),
        )
        for n in range(count)
    ]


def _metrics_request(tenant: common.Tenant) -> Req:
    return Req("GET", "/api/metrics/messages", dict(tenant.auth))


async def _read_times(db_path: Path, tenant_id: str) -> dict[str, float]:
    from gateway.db import Database
    from gateway.services import rollups
    from gateway.services.analytics import resolve_period
    from gateway.store.rollups import FIGURES
    from gateway.store.tenant_scope import TenantDB

    period = resolve_period(None, None, "Europe/Paris")
    spans = [(period.start, period.end), (period.previous.start, period.previous.end)]
    names = [figure.name for figure in FIGURES]
    db = Database(db_path, read_connections=1)
    db.start()
    try:
        tdb = TenantDB(db, tenant_id)
        reads = {
            "totals": lambda: rollups.figures(tdb, spans, names, {}, recipients=True),
            "breakdown": lambda: rollups.groups(
                tdb, spans, names[:5], {}, ("channel", "message_type")
            ),
        }
        out = {}
        for name, read in reads.items():
            best = float("inf")
            for _ in range(3):
                began = time.perf_counter()
                await read()
                best = min(best, time.perf_counter() - began)
            out[name] = best * 1000
        return out
    finally:
        await db.close()


def _query_times(db: Path, tenant_id: str) -> dict[str, float]:
    """The metrics endpoint's two reads (gateway.services.rollups) run alone for the
    largest tenant, best of three: where its time goes."""
    return asyncio.run(_read_times(db, tenant_id))


def measure_phase(
    ws: common.Workspace,
    port: int,
    phase: Phase,
    top: common.Tenant,
    median: common.Tenant,
    args: argparse.Namespace,
) -> None:
    gw = common.start_gateway(ws, port=port, DISPATCHER="off")
    tag = str(phase.rows)
    with common.connect(gw.db_path) as conn:
        phase.window_rows = conn.execute(
            "SELECT COUNT(*) FROM channel_messages_log WHERE tenant_id = ? "
            "AND created_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-60 days')",
            (top.id,),
        ).fetchone()[0]
    for name, tenant in (("top", top), ("median", median)):
        req = _metrics_request(tenant)
        asyncio.run(common.count_loop(gw.url, [req], count=3, connections=1))
        result = asyncio.run(
            common.count_loop(gw.url, [req], count=args.metrics_requests, connections=1)
        )
        common.log(f"{phase.rows:,} rows: metrics {name} p50 {result.p50_ms:.1f} ms")
        setattr(phase, f"metrics_{name}", result)
    phase.query_ms = _query_times(gw.db_path, top.id)

    count = round(args.send_rate * args.send_seconds)
    warm = _send_requests(top, 200, f"warm-{tag}")
    asyncio.run(common.open_loop(gw.url, warm, rate=args.send_rate, count=200, check=False))
    with common.timed(f"{phase.rows:,} rows: {count:,} sends at {args.send_rate:g}/s"):
        phase.send_fixed, _ = asyncio.run(
            common.open_loop(
                gw.url,
                _send_requests(top, count, tag),
                rate=args.send_rate,
                count=count,
                check=False,
            )
        )
    send_req = Req(
        "POST",
        "/api/channels/sms/send",
        {"Content-Type": "application/json", **top.auth},
        json.dumps(common.sms_payload()).encode(),
    )
    phase.send_max = common.measure(
        f"{phase.rows:,} rows: send saturation",
        gw.url,
        [send_req],
        seconds=args.load_seconds,
        warmup=0,
        connections=16,
        unique_header="Idempotency-Key",
        workdir=ws.dir,
    )

    # memory under load: sends (wrk) and metrics (4 in flight) together
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(common.vm_status(gw.proc.pid).get("VmRSS", 0))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    loaded: list[common.LoadResult] = []
    metrics_load = threading.Thread(
        target=lambda: loaded.append(
            common.closed_loop(
                gw.url,
                [_metrics_request(top), _metrics_request(median)],
                seconds=args.load_seconds,
                connections=4,
                workdir=ws.dir,
                force_httpx=True,
            )
        ),
        daemon=True,
    )
    sampler.start()
    metrics_load.start()
    common.measure(
        f"{phase.rows:,} rows: sends with metrics",
        gw.url,
        [send_req],
        seconds=args.load_seconds,
        warmup=0,
        connections=16,
        unique_header="Idempotency-Key",
        workdir=ws.dir,
    )
    metrics_load.join(args.load_seconds + 120)
    stop.set()
    sampler.join(5)
    phase.metrics_loaded = loaded[0] if loaded else None
    phase.rss_peak_kib = max(samples, default=0)
    phase.hwm_kib = common.vm_status(gw.proc.pid).get("VmHWM", 0)
    ws.stop(gw.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="messages at the end")
    parser.add_argument("--small", type=int, default=10_000, help="messages at the start")
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--send-rate", type=float, default=200.0, help="fixed-rate sends/s")
    parser.add_argument("--send-seconds", type=float, default=10.0)
    parser.add_argument("--load-seconds", type=float, default=8.0)
    parser.add_argument("--metrics-requests", type=int, default=60)
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load")
    args = parser.parse_args()
    if args.tenants < 500 or args.small >= args.rows:
        parser.error("need --tenants ≥ 500 (the median tenant is rank 500) and --small < --rows")
    pinning = common.set_pinning(not args.no_pin)
    phases = [Phase(args.small), Phase(args.rows)]

    with common.Workspace() as ws:
        port = common.free_port()
        gw = common.start_gateway(ws, port=port, DISPATCHER="off")
        top = common.create_tenant(gw, "bench-scale-top")
        median = common.create_tenant(gw, "bench-scale-median")
        ws.stop(gw.proc)
        with common.connect(gw.db_path, read_only=False) as conn:
            others = seed.make_tenants(conn, args.tenants - 2, "bench-scale")
        ids = [top.id, *others[:498], median.id, *others[498:]]
        plan = seed.plan(ids)
        seeded = 0
        for number, phase in enumerate(phases):
            with common.timed(f"seeding {phase.rows - seeded:,} messages"):
                seconds = seed.insert(gw.db_path, plan, phase.rows - seeded, seed=2 + number)
                steps, rolled = common.roll_up(gw.db_path)
                phase.notes.append(f"rolled up in {rolled:.1f} s ({steps} steps)")
            phase.notes.append(f"seeded in {seconds:.0f} s")
            seeded = phase.rows
            measure_phase(ws, port, phase, top, median, args)
        size_mib = gw.db_path.stat().st_size / 2**20

    def lat(r: common.LoadResult | None, pct: str = "p99") -> str:
        if r is None:
            return "-"
        return f"{r.p50_ms:.1f} / {r.p99_ms if pct == 'p99' else r.p95_ms:.1f}"

    rows_table = []
    for phase in phases:
        assert phase.send_max is not None and phase.send_fixed is not None
        rows_table.append(
            [
                f"{phase.rows:,}",
                lat(phase.send_fixed),
                f"{phase.send_max.rps:,.0f} ({phase.send_max.p99_ms:.1f})",
                lat(phase.metrics_top, "p95") + f" ({phase.window_rows:,} rows)",
                lat(phase.metrics_median, "p95"),
                lat(phase.metrics_loaded, "p95"),
                f"{phase.rss_peak_kib / 1024:.0f} / {phase.hwm_kib / 1024:.0f}",
            ]
        )
    big = phases[-1]
    assert big.metrics_top is not None and big.send_fixed is not None
    small = phases[0]
    assert small.send_fixed is not None
    lines = [
        f"{args.tenants:,} tenants, messages seeded by bench/seed.py (Zipf volumes over 90 days, "
        f"file {size_mib:,.0f} MiB at the end); the largest tenant (rank 1) sends and both it "
        "and the median tenant (rank 500) read their metrics. Gateway: DISPATCHER=off, fresh "
        "process at each size, page cache warm from the seeding (fsynced before measuring). "
        "Metrics first, on the seeded rows; then sends: open loop at "
        f"{args.send_rate:g}/s, then wrk -c16 for the saturation rate. Metrics: one request at "
        f"a time ({args.metrics_requests} each), then under load with the sends. {pinning}.",
        "",
        *common.table(
            [
                "messages in the table",
                f"send p50 / p99 ms at {args.send_rate:g}/s",
                "send max req/s (p99 ms)",
                "metrics, largest tenant p50 / p95 ms (its rows in the 60 days read)",
                "metrics, median tenant p50 / p95 ms",
                "metrics under send load p50 / p95 ms",
                "VmRSS peak under load / VmHWM MiB",
            ],
            rows_table,
        ),
        "",
        f"- send latency flat from {small.rows:,} to {big.rows:,} rows: p99 "
        f"{small.send_fixed.p99_ms:.1f} → {big.send_fixed.p99_ms:.1f} ms",
        f"- metrics p95 < 50 ms at {big.rows:,} rows: largest tenant "
        f"**{'met' if big.metrics_top.p95_ms < 50 else 'missed'}** "
        f"({big.metrics_top.p95_ms:.1f} ms)"
        + (
            f", median tenant **{'met' if big.metrics_median.p95_ms < 50 else 'missed'}** "
            f"({big.metrics_median.p95_ms:.1f} ms)"
            if big.metrics_median
            else ""
        ),
        "- where the largest tenant's metrics time goes (its two statements alone, sqlite3): "
        + "; ".join(
            f"{p.rows:,} rows: "
            + ", ".join(f"{name} {ms:.0f} ms" for name, ms in p.query_ms.items())
            for p in phases
        ),
        f"- VmRSS under load < 200 MB: **{'met' if big.rss_peak_kib * 1024 < 200e6 else 'missed'}**"
        f" (peak {big.rss_peak_kib * 1024 / 1e6:.0f} MB)",
        "- seeding: " + "; ".join(f"{p.rows:,} rows: {', '.join(p.notes)}" for p in phases),
    ]
    title = "Scale: 10 thousand to 1 million messages" + (f" ({args.label})" if args.label else "")
    common.append_results(title, lines, record=not args.no_record)


if __name__ == "__main__":
    main()
