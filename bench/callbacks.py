"""Status callbacks: signed form posts per second to `POST /webhooks/twilio/status`, and their
ratio to the ceiling (the bare Starlette JSON endpoint of bench/ceiling.py, same load).

Messages are accepted through the API first (DISPATCHER=off, so nothing else runs). Each gets
the callbacks Twilio would post for it — `sent`, then `delivered` — with Twilio's form fields,
to its StatusCallback URL (`…/webhooks/twilio/status?mid=<id>`), signed with X-Twilio-Signature
over PUBLIC_BASE_URL + path + query (gateway.sandbox.twilio_webhooks.sign, i.e. twilio's
RequestValidator). wrk replays the list in order: every `sent` first, then every `delivered`;
past the end of the list it starts again and the repeats are duplicates (answered, kept as
events, status unchanged) — the result says how many.

    .venv/bin/python -m bench.callbacks [--messages 20000] [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from urllib.parse import urlencode

from bench import common
from bench.common import Req
from gateway.sandbox.twilio_webhooks import SIGNATURE_HEADER, sign
from gateway.sandbox.twilio_wire import API_VERSION, new_sid


def _callbacks(gw: common.Gateway, ids: list[tuple[str, str]]) -> list[Req]:
    """(message id, recipient) → the signed `sent` callbacks, then the `delivered` ones."""
    sids = {mid: new_sid("SM") for mid, _ in ids}
    out = []
    for status in ("sent", "delivered"):
        for mid, to in ids:
            params = {
                "MessageSid": sids[mid],
                "SmsSid": sids[mid],
                "AccountSid": common.ACCOUNT_SID,
                "From": common.SHARED_NUMBER,
                "To": to,
                "MessageStatus": status,
                "SmsStatus": status,
                "ApiVersion": API_VERSION,
            }
            if status == "delivered":
                params["RawDlrDoneDate"] = "2611211200"
            path = f"/webhooks/twilio/status?mid={mid}"
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                SIGNATURE_HEADER: sign(gw.url + path, params, common.AUTH_TOKEN),
            }
            out.append(Req("POST", path, headers, urlencode(params).encode()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages with callbacks")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--httpx", action="store_true", help="use the httpx loop even with wrk")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load")
    args = parser.parse_args()
    pinning = common.set_pinning(not args.no_pin)
    load = {
        "seconds": args.seconds,
        "warmup": args.warmup,
        "connections": args.connections,
        "force_httpx": args.httpx,
    }

    with common.Workspace() as ws:
        ceiling_proc, ceiling_url = common.start_ceiling(ws)
        ceiling = common.measure(
            "ceiling", ceiling_url, [common.ceiling_request()], workdir=ws.dir, **load
        )
        ws.stop(ceiling_proc)

        gw = common.start_gateway(ws, DISPATCHER="off")
        tenant = common.create_tenant(gw, "bench-callbacks")
        warm = 500
        total = args.messages + warm
        with common.timed(f"accepting {total:,} messages through the API"):
            sends = [
                Req(
                    "POST",
                    "/api/channels/sms/send",
                    {"Content-Type": "application/json", **tenant.auth},
                    json.dumps(common.sms_payload(f"+336{12000000 + n:08d}")).encode(),
                )
                for n in range(total)
            ]
            asyncio.run(common.count_loop(gw.url, sends, count=total, connections=16))
        with common.connect(gw.db_path) as conn:
            ids = conn.execute(
                "SELECT id, to_address FROM channel_messages_log ORDER BY id"
            ).fetchall()
        requests = _callbacks(gw, ids[warm:])
        warmup_requests = _callbacks(gw, ids[:warm])
        result = common.measure(
            "gateway",
            gw.url,
            requests,
            workdir=ws.dir,
            warmup_requests=warmup_requests,
            **load,
        )
        rss = common.vm_status(gw.proc.pid)
        with common.connect(gw.db_path) as conn:
            statuses = dict(
                conn.execute(
                    "SELECT status, COUNT(*) FROM channel_messages_log GROUP BY status"
                ).fetchall()
            )
            events = conn.execute(
                "SELECT COUNT(*) FROM message_events WHERE source = 'twilio_status'"
            ).fetchone()[0]

    ratio = result.rps / ceiling.rps if ceiling.rps else 0.0
    duplicates = max(0, result.requests - len(requests))
    lines = [
        f"Load: {ceiling.tool}, {args.seconds:g} s measured after {args.warmup:g} s warm-up "
        f"(the gateway warmed on callbacks of {warm} other messages). Gateway: DISPATCHER=off, "
        f"{args.messages:,} accepted SMS, {len(requests):,} distinct signed callbacks "
        f"(sent, then delivered). {pinning}.",
        "",
        *common.table(
            common.RESULT_HEADER,
            [
                common.result_row("ceiling: bare Starlette JSON POST", ceiling),
                common.result_row("gateway: POST /webhooks/twilio/status", result),
            ],
        ),
        "",
        f"- ratio callbacks/ceiling: **{ratio:.1%}**",
        f"- callbacks past the end of the list (duplicates): {duplicates:,}; events stored "
        f"from callbacks: {events:,}; statuses after the run: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items())),
        f"- gateway VmRSS after the run {rss.get('VmRSS', 0) / 1024:.0f} MiB "
        f"(peak {rss.get('VmHWM', 0) / 1024:.0f} MiB)",
    ]
    title = "Status callbacks vs ceiling" + (f" ({args.label})" if args.label else "")
    common.append_results(title, lines, record=not args.no_record)


if __name__ == "__main__":
    main()
