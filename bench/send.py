"""Ceiling and gateway in one run: the same load generator, connections and request against

1. a bare Starlette endpoint that parses the JSON POST (bench/ceiling.py), and
2. `POST /api/channels/sms/send` on the real gateway (`gateway serve`): API key auth, channel
   state, suppression and idempotency look-ups, validation (E.164, body), segments and
   pricing, the row and its event committed with synchronous=FULL before the 202.

By default the gateway runs with DISPATCHER=off, so only the endpoint is measured; with
`--dispatcher on` it also sends every accepted message to the Twilio emulator (own process)
while under load. Each request carries a fresh Idempotency-Key (as a careful client sends),
unless `--no-idempotency-key`.

    .venv/bin/python -m bench.send [--seconds 15] [--connections 16] [--dispatcher off|on]
"""

from __future__ import annotations

import argparse
import json
import time

from bench import common
from bench.common import Req


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--dispatcher", choices=("off", "on"), default="off")
    parser.add_argument("--no-idempotency-key", action="store_true")
    parser.add_argument("--httpx", action="store_true", help="use the httpx loop even with wrk")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load")
    args = parser.parse_args()
    pinning = common.set_pinning(not args.no_pin)
    unique = None if args.no_idempotency_key else "Idempotency-Key"
    payload = json.dumps(common.sms_payload()).encode()
    load = {
        "seconds": args.seconds,
        "warmup": args.warmup,
        "connections": args.connections,
        "unique_header": unique,
        "force_httpx": args.httpx,
    }

    with common.Workspace() as ws:
        ceiling_proc, ceiling_url = common.start_ceiling(ws)
        ceiling = common.measure(
            "ceiling", ceiling_url, [common.ceiling_request()], workdir=ws.dir, **load
        )
        ws.stop(ceiling_proc)

        settings = {"DISPATCHER": args.dispatcher}
        if args.dispatcher == "on":
            # callbacks would come back to the gateway under load; this run measures sends
            _, twilio = common.start_twilio(ws, callback_delay=3600.0)
            # pacing out of the way (the setting must be more than 0)
            settings.update(
                TWILIO_API_BASE=twilio,
                DISPATCH_CONCURRENCY="8",
                DISPATCH_PER_SENDER_RATE="1000000",
            )
        gw = common.start_gateway(ws, **settings)
        tenant = common.create_tenant(gw, "bench-send")
        headers = {"Content-Type": "application/json", **tenant.auth}
        req = Req("POST", "/api/channels/sms/send", headers, payload)
        with common.connect(gw.db_path) as conn:
            rows_before = conn.execute("SELECT COUNT(*) FROM channel_messages_log").fetchone()[0]
        cpu_before = common.thread_cpu_seconds(gw.proc.pid)
        gateway = common.measure("gateway", gw.url, [req], workdir=ws.dir, **load)
        cpu_after = common.thread_cpu_seconds(gw.proc.pid)
        rss = common.vm_status(gw.proc.pid)
        time.sleep(0.5)
        with common.connect(gw.db_path) as conn:
            rows = conn.execute("SELECT COUNT(*) FROM channel_messages_log").fetchone()[0]
    accepted = max(rows - rows_before, 1)
    loop_us, others_us = (
        (after - before) / accepted * 1e6
        for before, after in zip(cpu_before, cpu_after, strict=True)
    )

    ratio = gateway.rps / ceiling.rps if ceiling.rps else 0.0
    mode = (
        "DISPATCHER=off (only the endpoint)"
        if args.dispatcher == "off"
        else "dispatcher on (DISPATCH_CONCURRENCY=8, no per-sender pacing), sending every "
        "message to the Twilio emulator (own process, callbacks held) while under load"
    )
    lines = [
        f"Load: {ceiling.tool}, {args.seconds:g} s measured after {args.warmup:g} s warm-up, "
        f"the same SMS JSON body ({len(payload)} bytes) to both"
        + ("" if args.no_idempotency_key else ", a fresh Idempotency-Key per request")
        + f". Gateway: {mode}; LOG_LEVEL=INFO (one access-log line per request). {pinning}.",
        "",
        *common.table(
            common.RESULT_HEADER,
            [
                common.result_row("ceiling: bare Starlette JSON POST", ceiling),
                common.result_row("gateway: POST /api/channels/sms/send", gateway),
            ],
        ),
        "",
        f"- ratio gateway/ceiling: **{ratio:.1%}** (target ≥ 50%: "
        f"**{_verdict(ratio, ceiling.tool)}**)",
        f"- gateway CPU per accepted send (warm-up included): event loop {loop_us:,.0f} µs, "
        f"other threads (database writer and readers) {others_us:,.0f} µs",
        f"- rows committed (warm-up included): {rows:,}; gateway VmRSS after the run "
        f"{rss.get('VmRSS', 0) / 1024:.0f} MiB (peak {rss.get('VmHWM', 0) / 1024:.0f} MiB)",
    ]
    title = "Send endpoint vs ceiling" + (f" ({args.label})" if args.label else "")
    common.append_results(title, lines, record=not args.no_record)


def _verdict(ratio: float, tool: str) -> str:
    if not tool.startswith("wrk"):  # the httpx loop tops out before the bare endpoint does
        return "not judged: the load generator, not the server, set the ceiling (install wrk)"
    return "met" if ratio >= 0.5 else "missed"


if __name__ == "__main__":
    main()
