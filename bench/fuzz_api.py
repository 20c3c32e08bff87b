"""Fuzz the whole API from its own OpenAPI document with schemathesis, once with a tenant key
and once with the operator key: no request may answer a 500.

The gateway runs as `gateway serve` (DISPATCHER=off: nothing is sent) on a loopback port,
with every provider base URL on loopback too: the Vapi emulator for the assistant sync, a
closed port for the others. `POST /api/channels/test` is left out: it connects to whatever
SMTP host a generated configuration names, and nothing here may leave the machine (not even
a DNS look-up). Dates and instants are drawn from years 1 to 9999 with offsets up to ±14:00
(bench/fuzz_hooks.py), where hypothesis alone stays in ordinary years. schemathesis (a
bench-only tool) is installed into the virtualenv on first use. Each run checks
`not_a_server_error` (any 5xx) by default; the table also counts the statuses the gateway's
own access log recorded, so a 500 cannot hide behind a check.

    .venv/bin/python -m bench.fuzz_api [--max-examples 50] [--seed 1] [--checks not_a_server_error]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import common

EXCLUDED = ["/api/channels/test"]
HOOKS = Path(__file__).with_name("fuzz_hooks.py")
DEAD_PORT = f"http://{common.HOST}:9"


def schemathesis() -> str:
    found = Path(sys.executable).parent / "schemathesis"
    if not found.exists():
        common.log("installing schemathesis (bench-only fuzzer) into the virtualenv")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "schemathesis"], check=True)
    return str(found)


def access_statuses(log: Path, start: int) -> tuple[collections.Counter[int], list[str], int]:
    """Statuses of the access-log lines after byte `start`, the requests that answered 5xx,
    and how many lines logged an unhandled error."""
    statuses: collections.Counter[int] = collections.Counter()
    server_errors: list[str] = []
    unhandled = 0
    with log.open("rb") as fh:
        fh.seek(start)
        for raw in fh:
            try:
                line: dict[str, Any] = json.loads(raw)
            except ValueError:
                continue
            if line.get("logger") == "gateway.error":
                unhandled += 1
            if line.get("logger") != "gateway.access":
                continue
            status = int(line.get("status", 0))
            statuses[status] += 1
            if status >= 500:
                server_errors.append(f"{status} {line.get('method')} {line.get('path')}")
    return statuses, server_errors, unhandled


def run_schemathesis(
    gw: common.Gateway, auth: dict[str, str], args: argparse.Namespace, workdir: Path
) -> tuple[int, str]:
    argv = [
        schemathesis(),
        "run",
        f"{gw.url}/openapi.json",
        "--url",
        gw.url,
        "-H",
        f"Authorization: {auth['Authorization']}",
        "-H",
        f"X-Vapi-Secret: {common.VAPI_SECRET}",
        "--checks",
        args.checks,
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
    ]
    for path in EXCLUDED:
        argv += ["--exclude-path", path]
    # dates and instants over the whole range, not only ordinary years (bench/fuzz_hooks.py)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    # in the workspace: nothing schemathesis writes lands in the repository
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=args.timeout, cwd=workdir, env=env
    )
    return done.returncode, done.stdout + done.stderr


def _summary(output: str) -> str:
    """schemathesis' own count of generated / passed / failed test cases."""
    lines = output.splitlines()
    for n, line in enumerate(lines):
        if line.strip() == "Test cases:" and n + 1 < len(lines):
            return lines[n + 1].strip()
    return "no summary (see the output above)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=50, help="test cases per operation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--checks", default="not_a_server_error", help="schemathesis checks (comma-separated)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run, at most")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    schemathesis()

    rows: list[list[object]] = []
    failures: list[str] = []
    with common.Workspace() as ws:
        vapi_url = common.start_vapi(ws)
        gw = common.start_gateway(
            ws,
            DISPATCHER="off",
            LOG_LEVEL="INFO",
            VAPI_API_BASE=vapi_url,
            TWILIO_API_BASE=DEAD_PORT,
            WHATSAPP_GRAPH_BASE=DEAD_PORT,
            D360_API_BASE=DEAD_PORT,
        )
        tenant = common.create_tenant(gw, "fuzz-tenant")
        for who, auth in (("tenant key", tenant.auth), ("operator key", gw.admin)):
            start = gw.proc.log_path.stat().st_size
            common.log(f"schemathesis with the {who} ({args.max_examples} cases per operation)")
            code, output = run_schemathesis(gw, auth, args, ws.dir)
            statuses, server_errors, unhandled = access_statuses(gw.proc.log_path, start)
            if code != 0:
                print(output)
                failures.append(who)
            by_class = collections.Counter(f"{s // 100}xx" for s in statuses.elements())
            rows.append(
                [
                    who,
                    _summary(output),
                    sum(statuses.values()),
                    by_class["2xx"],
                    by_class["4xx"],
                    statuses[500],
                    by_class["5xx"] - statuses[500],
                    unhandled,
                    "pass" if code == 0 else f"fail (exit {code})",
                ]
            )
            for line in sorted(set(server_errors))[:20]:
                common.log(f"  server error: {line}")

    title = "API fuzz (schemathesis)" + (f" — {args.label}" if args.label else "")
    lines = [
        f"schemathesis over `/openapi.json`, checks `{args.checks}`, {args.max_examples} cases "
        f"per operation, seed {args.seed}, {args.workers} workers; every operation but "
        + ", ".join(f"`POST {p}`" for p in EXCLUDED)
        + " (it connects to generated SMTP hosts). Requests and statuses are counted from the "
        "gateway's access log.",
        "",
        *common.table(
            [
                "key",
                "schemathesis test cases",
                "requests",
                "2xx",
                "4xx",
                "500",
                "other 5xx",
                "unhandled errors logged",
                "verdict",
            ],
            rows,
        ),
    ]
    common.append_results(title, lines, record=not args.no_record)
    if failures:
        sys.exit(f"schemathesis failed with the {' and the '.join(failures)}")


if __name__ == "__main__":
    main()
