"""Profile the send path: the gateway (DISPATCHER=off) under the same wrk load as bench/send.py,
sampled by py-spy (every thread: the event loop, the database writer and the readers, while
they hold the GIL) during the load. Prints and appends the busiest functions; the raw
collapsed stacks stay in bench/out/ (git-ignored) for a flame graph.

    .venv/bin/python -m bench.profile_send [--seconds 15] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from bench import common, profiling
from bench.common import Req


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="sampled seconds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load")
    args = parser.parse_args()
    pinning = common.set_pinning(not args.no_pin)
    raw_path = profiling.OUT / "send-profile.txt"
    payload = json.dumps(common.sms_payload()).encode()
    results: list[common.LoadResult] = []

    with common.Workspace() as ws:
        gw = common.start_gateway(ws, DISPATCHER="off")
        tenant = common.create_tenant(gw, "bench-profile")
        headers = {"Content-Type": "application/json", **tenant.auth}
        req = Req("POST", "/api/channels/sms/send", headers, payload)

        def load() -> None:
            results.append(
                common.closed_loop(
                    gw.url,
                    [req],
                    seconds=args.seconds + 3,
                    connections=args.connections,
                    unique_header="Idempotency-Key",
                    workdir=ws.dir,
                )
            )

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(1.5)
        common.log(f"py-spy: sampling the gateway for {args.seconds:g} s")
        profiling.record(gw.proc.pid, args.seconds, raw_path, args.rate)
        loader.join(args.seconds + 60)

    load_text = "load"
    if results:
        r = results[0]
        load_text = f"{r.tool} ({r.rps:,.0f} req/s while sampled, p99 {r.p99_ms:.1f} ms)"
    head = [
        f"Gateway with DISPATCHER=off under {load_text}; {pinning}; py-spy {args.rate} Hz on "
        "every thread, counting a sample only while the thread holds the GIL (where the "
        "Python CPU goes); non-blocking, so stacks are approximate. Raw stacks: "
        "bench/out/send-profile.txt (git-ignored).",
        "",
    ]
    lines = profiling.summarize(raw_path.read_text(), args.top)
    title = "Send path profile" + (f" ({args.label})" if args.label else "")
    common.append_results(title, head + lines, record=not args.no_record)


if __name__ == "__main__":
    main()
