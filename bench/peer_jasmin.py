"""The peer benchmark: our gateway and Jasmin 0.11.1 side by side, the same wrk load.

1. Our gateway as bench.send `--dispatcher on` runs it: `gateway serve` (SQLite,
   synchronous=FULL), the dispatcher sending every accepted message to the Twilio emulator
   (own process, status callbacks held), `POST /api/channels/sms/send` with a fresh
   Idempotency-Key and recipient per request.
2. Jasmin: Debian's RabbitMQ and Redis as plain child processes (loopback, free ports, data in
   the run's temporary directory), jasmind from its own virtualenv (`pip install
   jasmin==0.11.1`, cached in the user's cache directory), configured by its config file and
   jCli: an SMPP client connector to our minimal SMPP server (bench/peer/smpp_server.py,
   `submit_throughput 0`), a default MT route, a user; `GET /send?username=…&to=…&content=…`
   with a fresh recipient per request.

Both systems are set up first, then loaded in turn at each of `--connections` (a warm-up,
then `--seconds` measured), each run followed by a wait until its downstream emulator holds
every message the system accepted, so the next run starts on a quiet machine and the two are
measured close together. Servers (the gateway; jasmind, RabbitMQ and Redis) are pinned to the
last core, wrk and the emulators to the others. Every process started here is stopped, with
its process group, also on Ctrl-C or an error.

    .venv/bin/python -m bench.peer_jasmin [--seconds 15] [--connections 16,64] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Sequence

from bench import common
from bench.common import Workspace
from bench.peer import jasmin, load
from bench.peer.systems import Gateway, Jasmin, timed

LOGS = common.ROOT / "bench" / "out" / "peer-jasmin-logs"
STALLED = 15.0  # seconds without progress that end a drain wait early

System = Gateway | Jasmin


def exercise(system: System, connections: int, slot: int, args: argparse.Namespace,
             ws: Workspace) -> None:  # fmt: skip
    """A warm-up, the measured run, then the drain wait; recipients of their own per run."""
    for n, (measured, seconds) in enumerate(((False, args.warmup), (True, args.seconds))):
        if seconds <= 0:
            continue
        phase = "measuring" if measured else "warm-up"
        common.log(f"{system.name} c{connections}: {phase} {seconds:g} s")
        result = load.run(system.url, system.script(slot * 2 + n), seconds=seconds,
                          connections=connections, workdir=ws.dir)  # fmt: skip
        system.figures.answered_2xx += result.requests - result.errors
        if measured:
            system.figures.runs.append((connections, result))
            common.log(
                f"{system.name} c{connections}: {result.rps:,.0f} req/s, p50 "
                f"{result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, errors {result.errors:,}"
            )
    system.figures.drain_seconds.append(drain(system, args.drain_timeout))


def drain(system: System, timeout: float) -> float:
    """Seconds until nothing the system accepted is left on its way (or no progress for
    STALLED seconds, or `timeout`)."""
    began = time.monotonic()
    last, since = -1, began
    while (pending := system.pending()) and time.monotonic() - began < timeout:
        if pending != last:
            last, since = pending, time.monotonic()
        elif time.monotonic() - since > STALLED:
            break
        time.sleep(0.5)
    seconds = time.monotonic() - began
    common.log(f"{system.name}: drained in {seconds:.1f} s ({pending:,} left)")
    return seconds


def report(systems: Sequence[System]) -> list[list[object]]:
    """One row per run, in the order they ran (the systems in turn at each level)."""
    rows: list[list[object]] = []
    for level in range(len(systems[0].figures.runs)):
        for system in systems:
            connections, result = system.figures.runs[level]
            name, *figures = common.result_row(system.label, result)
            rows.append([name, connections, *figures])
    return rows


def verdicts(gateway: Gateway, peer: Jasmin) -> list[str]:
    """Issue 13's targets for the accept path, read off this run."""
    lines = []
    for (connections, ours), (_, theirs) in zip(gateway.figures.runs, peer.figures.runs,
                                                 strict=True):  # fmt: skip
        ratio = ours.rps / theirs.rps if theirs.rps else 0.0
        line = (
            f"- c{connections}: gateway {ours.rps:,.0f} vs Jasmin {theirs.rps:,.0f} req/s "
            f"({ratio:.0%}): faster than Jasmin **{'yes' if ratio > 1 else 'no'}**"
        )
        if connections == 64:
            met = ours.p99_ms < 50
            line += (
                f"; gateway p99 {ours.p99_ms:.1f} ms (< 50 ms: **{'met' if met else 'missed'}**)"
            )
        lines.append(line)
    return lines


def parse_connections(value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers") from exc
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("at least one concurrency, each at least 1")
    return levels


def keep_logs(ws: Workspace) -> None:
    shutil.rmtree(LOGS, ignore_errors=True)
    for log in ws.dir.rglob("*.log"):
        target = LOGS / log.relative_to(ws.dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, target)
    common.log(f"logs copied to {LOGS.relative_to(common.ROOT)}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=parse_connections, default=[16, 64],
                        help="concurrency levels, comma-separated (default 16,64)")  # fmt: skip
    parser.add_argument("--drain-timeout", type=float, default=120.0,
                        help="seconds to wait for the downstream after each run")  # fmt: skip
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load")
    where = LOGS.relative_to(common.ROOT)
    parser.add_argument("--keep-logs", action="store_true", help=f"copy the logs to {where}/")
    args = parser.parse_args()
    if not common.have_wrk():
        raise SystemExit("wrk is needed (apt-get install wrk)")
    setup: list[str] = []
    timed(setup, "Debian packages", jasmin.ensure_debian_packages)
    pinning = common.set_pinning(not args.no_pin)
    with Workspace() as ws:
        try:
            gateway = Gateway(ws)
            peer = Jasmin(ws, setup)
            systems: list[System] = [gateway, peer]
            load_before = os.getloadavg()
            for slot, connections in enumerate(args.connections):
                for system in systems:
                    exercise(system, connections, slot, args, ws)
            downstream = [system.downstream() for system in systems]
        finally:
            for proc in list(ws.procs):
                ws.stop(proc)
            if args.keep_logs:
                keep_logs(ws)
    load_after = os.getloadavg()

    levels = ", ".join(str(c) for c in args.connections)
    lines = [
        f"Load: wrk -t1 at {levels} connections, {args.seconds:g} s measured after "
        f"{args.warmup:g} s warm-up, the systems in turn at each level (each run followed by "
        f"a wait until its downstream emulator holds every accepted message); one request "
        f"kind per system with a fresh recipient per request (the gateway's also a fresh "
        f"Idempotency-Key), the same SMS text. {pinning}; Jasmin's jasmind, RabbitMQ and Redis "
        f"all on the server core, as the gateway and its SQLite are; the Twilio emulator and "
        f"the SMPP server on the load cores. Gateway: LOG_LEVEL=INFO, SQLite "
        f"synchronous=FULL, DISPATCH_CONCURRENCY=8. Jasmin: as installed (its logs in the "
        f"run's directory), connector submit_throughput 0, no delivery receipts.",
        "",
        *common.table(["target", "connections", *common.RESULT_HEADER[1:]], report(systems)),
        "",
        *verdicts(gateway, peer),
    ]
    for system, reached in zip(systems, downstream, strict=True):
        drains = " / ".join(f"{s:.1f}" for s in system.figures.drain_seconds)
        lines.append(
            f"- {system.name} downstream: {system.figures.answered_2xx:,} 2xx answers counted "
            f"by wrk (warm-ups included; those in flight when wrk stops are not counted) → "
            f"{reached}; drain waits after each level {drains} s"
        )
    lines += [f"- guarantees, {system.name}: {system.guarantees}" for system in systems]
    lines += [
        f"- setup: {'; '.join(setup)}",
        f"- load average (1, 5, 15 min) when the load began {_load(load_before)}, at the end "
        f"{_load(load_after)} ({os.cpu_count()} cores)",
    ]
    title = "Peer: gateway vs Jasmin 0.11.1" + (f" ({args.label})" if args.label else "")
    common.append_results(title, lines, record=not args.no_record)


def _load(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
