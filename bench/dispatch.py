"""Dispatch: queued → sent against the Twilio emulator running as its own process.

1. Pre-load: the gateway runs with DISPATCHER=off and accepts `--messages` SMS through the API
   (`POST /api/channels/sms/send`), spread over `--tenants` tenants, each with its own sender
   number (per-sender pacing, DISPATCH_PER_SENDER_RATE, caps one sender; many senders keep
   it from capping the whole run).
2. Drain: the gateway restarts on the same database with the dispatcher on; the sustained
   rate is read from the rows' `sent_at` (10th to 90th percentile of the run, so start-up and
   the tail do not count), and every message is checked sent exactly once at the emulator.
3. Live: messages arrive through the API at a fixed `--live-rate` while the dispatcher runs;
   accepted → sent is each row's `created_at` → `sent_at` (p50/p99).

Status callbacks are held: the emulator runs with a callback delay longer than the run
(`--callback-delay`), so no message moves past `queued` at Twilio, no callback comes back
and no price is fetched while measuring; they would compete for the same CPU.

4. Client ceiling: the gateway's own Twilio adapter (its lean form POST on aiohttp,
   gateway/providers/twilio/rest.py) alone, in this process pinned to the server's core,
   sending to the same emulator with the same concurrency: what one core can push through
   the HTTP client before any dispatcher work.

    .venv/bin/python -m bench.dispatch [--messages 20000] [--tenants 50] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench import common, profiling
from bench.common import Req
from gateway.ids import now_iso


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _ro(path: Path) -> contextlib.AbstractContextManager[sqlite3.Connection]:
    return common.connect(path)


def _wait_for(db: Path, where: str, expected: int, timeout: float) -> tuple[int, int]:
    """Poll until `expected` rows matching `where` are sent or failed; (sent, failed)."""
    deadline = time.monotonic() + timeout
    sent = failed = 0
    with _ro(db) as conn:
        while time.monotonic() < deadline:
            sent, failed = conn.execute(
                "SELECT COALESCE(SUM(status = 'sent'), 0), COALESCE(SUM(status = 'failed'), 0) "
                f"FROM channel_messages_log WHERE {where}"
            ).fetchone()
            if sent + failed >= expected:
                break
            time.sleep(0.5)
    return sent, failed


def _requests(tenants: list[common.Tenant], count: int, unique: bool) -> list[Req]:
    out = []
    for n in range(count):
        tenant = tenants[n % len(tenants)]
        headers = {"Content-Type": "application/json", **tenant.auth}
        if unique:
            headers["Idempotency-Key"] = f"live-{n}"
        # one message per recipient: the same text to the same recipient from the same
        # sender (twins) is sent one after the other by design, which is not what this
        # measures (see bench/README.md)
        body = json.dumps(common.sms_payload(f"+336{12000000 + n:08d}")).encode()
        out.append(Req("POST", "/api/channels/sms/send", headers, body))
    return out


async def _adapter_ceiling(twilio: str, concurrency: int, count: int) -> tuple[float, float]:
    """(sends per second, CPU µs per send) of TwilioSms alone against the emulator."""
    from gateway.providers.base import OutboundMessage
    from gateway.providers.twilio.sms import TwilioSms

    adapter = TwilioSms(common.ACCOUNT_SID, common.AUTH_TOKEN, twilio)
    message = OutboundMessage(
        id="msg_bench",
        tenant_id="ten_bench",
        to="+33612000000",
        body=common.SMS_BODY,
        config=None,  # the SMS adapter does not read it
        sender=common.SHARED_NUMBER,
        subject=None,
        html_body=None,
        template=None,
        status_callback="http://127.0.0.1:9/webhooks/twilio/status?mid=msg_bench",
    )
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await adapter.send(message)

    try:
        await asyncio.gather(*(one() for _ in range(min(500, count))))  # warm-up
        cpu, began = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        elapsed, used = time.perf_counter() - began, time.process_time() - cpu
    finally:
        await adapter.aclose()
    return count / elapsed, used / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="pre-loaded backlog")
    parser.add_argument("--tenants", type=int, default=50, help="tenants, one sender each")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="DISPATCH_CONCURRENCY (default: the gateway's own default, 32)",
    )
    parser.add_argument(
        "--per-sender-rate", type=float, default=50.0, help="DISPATCH_PER_SENDER_RATE"
    )
    parser.add_argument("--live-rate", type=float, default=300.0, help="live sends per second")
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--callback-delay", type=float, default=3600.0)
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway's drain")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load")
    args = parser.parse_args()
    if not 1 <= args.tenants <= 100:
        parser.error("--tenants must be between 1 and 100 (one sender number each)")
    pinning = common.set_pinning(not args.no_pin)
    profile_lines: list[str] = []

    with common.Workspace() as ws:
        twilio_proc, twilio = common.start_twilio(ws, callback_delay=args.callback_delay)
        port = common.free_port()
        gw = common.start_gateway(ws, port=port, DISPATCHER="off", TWILIO_API_BASE=twilio)
        with common.timed(f"{args.tenants} tenants"):
            tenants = [
                common.create_tenant(gw, f"bench-dispatch-{n:03d}", sender=f"+339390357{n:02d}")
                for n in range(args.tenants)
            ]
        with common.timed(f"pre-loading {args.messages:,} messages through the API"):
            preload = asyncio.run(
                common.count_loop(
                    gw.url,
                    _requests(tenants, args.messages, unique=False),
                    count=args.messages,
                    connections=16,
                    unique_header="Idempotency-Key",
                )
            )
        if preload.errors:
            raise SystemExit(f"pre-load: {preload.errors} requests failed")
        ws.stop(gw.proc)

        dispatch_settings = {
            "DISPATCHER": "on",
            "TWILIO_API_BASE": twilio,
            "DISPATCH_CONCURRENCY": str(args.concurrency),
            "DISPATCH_PER_SENDER_RATE": f"{args.per_sender_rate:g}",
        }
        cpu_twilio = common.cpu_seconds(twilio_proc.pid)
        started = time.time()
        gw = common.start_gateway(ws, port=port, **dispatch_settings)
        profiler = None
        if args.profile:
            raw_path = profiling.OUT / "dispatch-profile.txt"
            seconds = max(3.0, min(15.0, args.messages / 2000))
            profiler = threading.Thread(
                target=profiling.record, args=(gw.proc.pid, seconds, raw_path), daemon=True
            )
            profiler.start()
        with common.timed("draining"):
            sent, failed = _wait_for(gw.db_path, "1 = 1", args.messages, args.messages / 50 + 60)
        drain_wall = time.time() - started
        cpu_gw = common.cpu_seconds(gw.proc.pid)
        cpu_twilio = common.cpu_seconds(twilio_proc.pid) - cpu_twilio
        if profiler is not None:
            profiler.join(120)
            profile_lines = profiling.summarize(
                (profiling.OUT / "dispatch-profile.txt").read_text(), 20
            )
        with _ro(gw.db_path) as conn:
            stamps = sorted(
                _ts(r[0])
                for r in conn.execute(
                    "SELECT sent_at FROM channel_messages_log WHERE sent_at IS NOT NULL"
                )
            )

        live_count = round(args.live_rate * args.live_seconds)
        live_start = now_iso()
        with common.timed(f"live: {live_count:,} sends at {args.live_rate:g}/s"):
            live, _ = asyncio.run(
                common.open_loop(
                    gw.url,
                    _requests(tenants, live_count, unique=True),
                    rate=args.live_rate,
                    count=live_count,
                    check=False,
                )
            )
            where = f"created_at >= '{live_start}'"
            live_sent, live_failed = _wait_for(gw.db_path, where, live_count, 120)
        with _ro(gw.db_path) as conn:
            delays = [
                (_ts(sent_at) - _ts(created)) * 1000
                for created, sent_at in conn.execute(
                    "SELECT created_at, sent_at FROM channel_messages_log "
                    f"WHERE {where} AND sent_at IS NOT NULL"
                )
            ]
        at_twilio = httpx.get(twilio + "/_sandbox/messages", timeout=120).json()
        created_at_twilio = len(at_twilio["messages"])
        requests_at_twilio = at_twilio["create_requests"]
        rss = common.vm_status(gw.proc.pid)
        ws.stop(gw.proc)
        with common.timed("client ceiling: the Twilio adapter alone"):
            common.pin_self("server")
            ceiling_rate, ceiling_cpu = asyncio.run(
                _adapter_ceiling(twilio, args.concurrency, min(5000, args.messages))
            )
            common.pin_self("load")

    n = len(stamps)
    lo, hi = (stamps[n // 10], stamps[n * 9 // 10]) if n else (0.0, 0.0)
    sustained = (n * 8 // 10) / (hi - lo) if n and hi > lo else 0.0
    overall = n / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else 0.0
    per_second: dict[int, int] = {}
    for stamp in stamps:
        per_second[int(stamp)] = per_second.get(int(stamp), 0) + 1
    inner = sorted(per_second.items())[1:-1]
    total_expected = args.messages + live_count
    lines = [
        f"Twilio emulator in its own process, status callbacks held (callback_delay "
        f"{args.callback_delay:g} s: none sent, no price fetched). {pinning}. Gateway: "
        f"DISPATCH_CONCURRENCY={args.concurrency}, DISPATCH_PER_SENDER_RATE="
        f"{args.per_sender_rate:g} per sender, {args.tenants} tenants each with its own sender "
        f"number (a cap of {args.tenants * args.per_sender_rate:,.0f}/s overall), LOG_LEVEL=INFO.",
        "",
        *common.table(
            ["measure", "value"],
            [
                [
                    "pre-load through the API (DISPATCHER=off)",
                    f"{preload.requests:,} sends at {preload.rps:,.0f}/s ({preload.tool})",
                ],
                ["backlog drained: sent / failed", f"{sent:,} / {failed:,}"],
                [
                    "**sustained drain rate** (10th→90th percentile of sent_at)",
                    f"**{sustained:,.0f} msg/s**",
                ],
                ["first → last sent", f"{overall:,.0f} msg/s"],
                [
                    "1-second buckets (min / max, edges dropped)",
                    f"{min((c for _, c in inner), default=0):,} / "
                    f"{max((c for _, c in inner), default=0):,}",
                ],
                [
                    "drain wall time, gateway start included",
                    f"{drain_wall:.1f} s",
                ],
                [
                    "CPU: gateway (start + drain) / Twilio emulator",
                    f"{cpu_gw:.1f} s / {cpu_twilio:.1f} s",
                ],
                [
                    f"live: {live.requests:,} accepted at {args.live_rate:g}/s (accept p50 / p99)",
                    f"{live.p50_ms:.1f} / {live.p99_ms:.1f} ms, errors {live.errors}",
                ],
                ["live: sent / failed", f"{live_sent:,} / {live_failed:,}"],
                [
                    "**live: accepted → sent** (created_at → sent_at) p50 / p99 / max",
                    f"**{common.percentile(delays, 50):.0f} / {common.percentile(delays, 99):.0f}"
                    f" / {max(delays, default=0):.0f} ms**",
                ],
                [
                    "at the emulator: messages / create requests (expected)",
                    f"{created_at_twilio:,} / {requests_at_twilio:,} ({total_expected:,})",
                ],
                [
                    "gateway VmRSS / peak",
                    f"{rss.get('VmRSS', 0) / 1024:.0f} / {rss.get('VmHWM', 0) / 1024:.0f} MiB",
                ],
                [
                    f"client ceiling: TwilioSms alone, {args.concurrency} in flight, "
                    "on the server's core",
                    f"{ceiling_rate:,.0f} sends/s, {ceiling_cpu:,.0f} µs CPU per send",
                ],
            ],
        ),
        "",
        f"- target ≥ 1,000 msg/s sustained: **{'met' if sustained >= 1000 else 'missed'}**",
    ]
    if profile_lines:
        lines += ["", "py-spy of the gateway during the drain (GIL-holding samples):", ""]
        lines += profile_lines
    title = "Dispatch: queued → sent" + (f" ({args.label})" if args.label else "")
    common.append_results(title, lines, record=not args.no_record)


if __name__ == "__main__":
    main()
