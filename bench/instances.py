"""Send and dispatch on PostgreSQL with one and three instances, beside SQLite, in one run.

Three targets, each on fresh databases: SQLite (one `gateway serve`, the embedded default),
PostgreSQL with one instance, and PostgreSQL with three instances on one database. For each:

1. Accept under dispatch (bench.send `--dispatcher on`): `POST /api/channels/sms/send` with
   wrk -t1 -c16 and a fresh Idempotency-Key per request while the dispatcher sends every
   accepted message to the Twilio emulator (DISPATCH_CONCURRENCY=8 per instance, pacing at
   a rate never reached). Unlike bench.send, each request has its own recipient: identical
   messages to one recipient from one sender are sent one after the other by design (see the
   README's "Exactly once"), which would make the dispatcher a queue of one. With three
   instances, one wrk per instance with the connections split between them (what a load
   balancer spreading connections does); the latencies are merged from their histograms.
2. Drain (bench.dispatch): a backlog of `--messages` accepted by one instance with
   DISPATCHER=off over `--tenants` tenants with a sender each, then drained by the target's
   instances (DISPATCH_CONCURRENCY=8 each, DISPATCH_PER_SENDER_RATE=50 per sender, shared by
   the instances on PostgreSQL); the sustained rate is read from the rows' `sent_at` (10th to
   90th percentile).

After each phase every accepted row is looked for at the emulator: each row has its own
recipient, so the create requests and the distinct recipients the emulator holds must both
equal the rows (each accepted message exactly once). Status callbacks are held for the run.

PostgreSQL is a throwaway server started here, not the test harness's (tests/postgres.py runs
with fsync off, for speed): Debian's `initdb` + `pg_ctl` as the `postgres` user in a temporary
directory, loopback only, a free port, default durability (fsync, synchronous_commit and
full_page_writes on). It is stopped and its directory removed at the end. With pinning (the
default) PostgreSQL runs on the servers' core beside the gateways, the load generator and the
emulator on the other(s): every target gets the same server budget.

    .venv/bin/python -m bench.instances [--seconds 15] [--messages 3000] [--instances 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import common
from bench.common import Gateway, LoadResult, Req, Workspace

SEND_PATH = "/api/channels/sms/send"
RECIPIENT = "+33600000000"  # replaced in each request by a recipient of its own
_DONE = ("sent", "failed", "delivered", "undelivered")
# bench.send's "no per-sender pacing" (0) is refused by the typed settings: a rate never reached
UNPACED = "1000000"


# -- a throwaway PostgreSQL ---------------------------------------------------------------------


@dataclass
class ThrowawayPostgres:
    """One PostgreSQL server in a temporary directory, default durability, loopback only."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-pg-")))
    port: int = 0
    _databases: int = 0

    def __post_init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version)
        found = str(versions[-1]) if versions else shutil.which("initdb")
        if not found:
            raise SystemExit("no initdb found: apt-get install postgresql")
        self.bindir = Path(found).parent
        self.user = _server_user()

    def _run(self, *args: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        argv = [*prefix, str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)

    def start(self) -> None:
        if self.user is not None:
            shutil.chown(self.directory, self.user, self.user)
        self.directory.chmod(0o700)
        data = str(self.directory / "data")
        init = self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--locale=C", "--no-instructions")  # fmt: skip
        if init.returncode != 0:
            raise SystemExit(f"initdb failed: {init.stderr.strip()}")
        self.port = common.free_port()
        options = (
            f"-k {self.directory} -p {self.port} -c listen_addresses={common.HOST} "
            "-c max_connections=200"
        )
        # the postmaster and every backend it forks inherit the servers' core
        log = str(self.directory / "log")
        started = self._run("pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", options,
                            "start", prefix=common.pinned("server"))  # fmt: skip
        if started.returncode != 0:
            tail = Path(log).read_text(errors="replace")[-2000:]
            raise SystemExit(f"pg_ctl start failed: {tail}")

    def stop(self) -> None:
        if (self.directory / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{common.HOST}:{self.port}/{database}"

    def new_database(self) -> str:
        self._databases += 1
        name = f"bench_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def describe(self) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            shown = [
                f"{name}={_one(conn, f'SHOW {name}')}"
                for name in ("fsync", "synchronous_commit", "full_page_writes", "wal_level")
            ]
            version = _one(conn, "SHOW server_version")
        return f"PostgreSQL {version.split()[0]}, " + ", ".join(shown)

    def cpu_seconds(self) -> float:
        """CPU time of the postmaster and its live children (backends, background workers)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            master = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
            total = common.cpu_seconds(master)
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit() and _parent(entry) == master:
                    total += common.cpu_seconds(int(entry.name))
            return total
        return 0.0


def _version(initdb: Path) -> list[int]:
    return [int(p) if p.isdigit() else 0 for p in initdb.parent.parent.name.split(".")]


def _server_user() -> str | None:
    """PostgreSQL refuses root: as root it runs as `postgres` (or `pgtest`, as in the tests)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgtest"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise SystemExit("no `postgres` user to run PostgreSQL as (apt-get install postgresql)")


def _one(conn: psycopg.Connection[tuple[Any, ...]], sql: str) -> str:
    row = conn.execute(sql).fetchone()
    return str(row[0]) if row else ""


def _parent(proc: Path) -> int:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return 0


# -- targets and their databases ----------------------------------------------------------------


@dataclass
class Target:
    name: str
    instances: int
    postgres: ThrowawayPostgres | None = None

    def fresh_database(self, ws: Workspace, phase: str) -> dict[str, str]:
        """The settings naming a new, empty database for one phase."""
        if self.postgres is not None:
            return {"DATABASE_URL": self.postgres.new_database()}
        return {"DATABASE_PATH": str(ws.dir / f"{phase}.sqlite3")}


def query(database: Mapping[str, str], sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read on the phase's database (portable SQL)."""
    url = database.get("DATABASE_URL")
    if url:
        with psycopg.connect(url, autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())
    with common.connect(Path(database["DATABASE_PATH"])) as lite:
        return [tuple(row) for row in lite.execute(sql).fetchall()]


def statuses(database: Mapping[str, str]) -> Counter[str]:
    sql = "SELECT status, COUNT(*) FROM channel_messages_log GROUP BY status"
    return Counter({str(status): int(n) for status, n in query(database, sql)})


def wait_drained(database: Mapping[str, str], timeout: float) -> Counter[str]:
    """Poll until no message is left queued or in flight (or `timeout`); the status counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = statuses(database)
        pending = sum(n for status, n in counts.items() if status not in _DONE)
        if not pending or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def sent_stamps(database: Mapping[str, str]) -> list[float]:
    sql = "SELECT sent_at FROM channel_messages_log WHERE sent_at IS NOT NULL"
    return sorted(_ts(str(row[0])) for row in query(database, sql))


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def start_instances(ws: Workspace, target: Target, **settings: str) -> list[Gateway]:
    """The target's `gateway serve` processes, started at the same moment (a drain measured
    from the first one's start would otherwise run on one instance for a while)."""
    ports = [common.free_port() for _ in range(target.instances)]
    environs = [common.gateway_environ(ws, port, **settings) for port in ports]
    procs = []
    for n, (port, env) in enumerate(zip(ports, environs, strict=True)):
        argv = [*common.pinned("server"), sys.executable, "-m", "gateway", "serve",
                "--host", common.HOST, "--port", str(port)]  # fmt: skip
        procs.append(ws.start(f"gateway-{n}-{port}", argv, env))
    gateways = []
    for proc, port, env in zip(procs, ports, environs, strict=True):
        url = f"http://{common.HOST}:{port}"
        common.wait_http(url + "/readyz", proc, timeout=90)
        gateways.append(
            Gateway(proc, url, port, Path(env["DATABASE_PATH"]), env.get("DATABASE_URL"))
        )
    return gateways


def stop_all(ws: Workspace, gateways: Sequence[Gateway]) -> None:
    for gw in gateways:
        ws.stop(gw.proc)


# -- the emulator's count -----------------------------------------------------------------------


@dataclass
class AtEmulator:
    rows: int  # accepted rows in the database
    creates: int  # create requests the emulator answered
    recipients: int  # distinct recipients among the messages it holds

    @property
    def exactly_once(self) -> bool:
        return self.creates == self.recipients == self.rows

    def cell(self) -> str:
        verdict = "**yes**" if self.exactly_once else "**NO**"
        return (
            f"{self.rows:,} rows → {self.creates:,} creates, {self.recipients:,} recipients: "
            + verdict
        )


def at_emulator(twilio: str, rows: int) -> AtEmulator:
    held = httpx.get(twilio + "/_sandbox/messages", timeout=120).json()
    recipients = {message["to"] for message in held["messages"]}
    return AtEmulator(rows, int(held["create_requests"]), len(recipients))


def reset_emulator(twilio: str) -> None:
    httpx.post(twilio + "/_sandbox/reset", timeout=30).raise_for_status()


# -- load: wrk, one per instance ----------------------------------------------------------------


def _lua(slot: int, headers: Mapping[str, str], body: str) -> str:
    """wrk's script: POSTs with an Idempotency-Key and a recipient of their own (`+336`, the
    two-digit slot of this wrk process, a six-digit counter), and a `done` that also writes
    the latency histogram (µs: count) so several wrk processes can be merged."""
    head, tail = body.split(RECIPIENT)
    lua_headers = ", ".join(
        f"[ {common._lua_string(k)} ] = {common._lua_string(v)}" for k, v in sorted(headers.items())
    )
    return f"""
local counter = 0
function request()
  counter = counter + 1
  local h = {{{lua_headers}}}
  h["Idempotency-Key"] = "bench-{slot:02d}-" .. counter
  local body = {common._lua_string(head)} .. string.format("+336{slot:02d}%06d", counter)
    .. {common._lua_string(tail)}
  return wrk.format("POST", "{SEND_PATH}", h, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d}}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status))
  local parts = {{}}
  for i = 1, #latency do  -- the distinct latencies (µs) and how many requests took each
    local us, n = latency(i)
    parts[#parts + 1] = us .. ":" .. n
  end
  io.write("BENCHHIST " .. table.concat(parts, " ") .. "\\n")
end
"""


def spread_wrk(
    gateways: Sequence[Gateway],
    headers: Mapping[str, str],
    seconds: float,
    connections: int,
    run: int,
    workdir: Path,
) -> LoadResult:
    """`connections` wrk connections split over the instances (one wrk -t1 each), for
    `seconds`; one result, percentiles from the merged histograms."""
    body = json.dumps(common.sms_payload(RECIPIENT))
    count = len(gateways)
    split = [connections // count + (1 if n < connections % count else 0) for n in range(count)]
    procs: list[subprocess.Popen[str]] = []
    try:
        for n, (gw, conns) in enumerate(zip(gateways, split, strict=True)):
            script = workdir / f"wrk-{run}-{n}.lua"
            script.write_text(_lua(run * 10 + n, headers, body))
            length = f"-d{max(1, round(seconds))}s"
            argv = [*common.pinned("load"), "wrk", "-t1", f"-c{conns}", length,
                    "--timeout", "10s", "-s", str(script), gw.url]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir
                )
            )
        outputs = [proc.communicate(timeout=seconds + 60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    requests = errors = 0
    duration = 0.0
    histogram: Counter[int] = Counter()
    for out, err in outputs:
        summary = next((ln for ln in out.splitlines() if ln.startswith("BENCHJSON ")), None)
        hist = next((ln for ln in out.splitlines() if ln.startswith("BENCHHIST")), None)
        if summary is None or hist is None:
            raise RuntimeError(f"wrk gave no result:\n{out[-2000:]}\n{err[-2000:]}")
        data = json.loads(summary[len("BENCHJSON ") :])
        requests += data["requests"]
        errors += data["errors"]
        duration = max(duration, data["duration_us"] / 1e6)
        for pair in hist[len("BENCHHIST") :].split():
            us, _, times = pair.partition(":")
            histogram[int(float(us))] += int(float(times))
    tool = f"wrk -t1 -c{connections}"
    if count > 1:
        tool = f"{count} wrk -t1, {'/'.join(map(str, split))} connections"
    return LoadResult(
        tool=tool,
        requests=requests,
        seconds=duration,
        errors=errors,
        p50_ms=_hist_percentile(histogram, 50) / 1000,
        p90_ms=_hist_percentile(histogram, 90) / 1000,
        p95_ms=_hist_percentile(histogram, 95) / 1000,
        p99_ms=_hist_percentile(histogram, 99) / 1000,
        max_ms=max(histogram, default=0) / 1000,
    )


def _hist_percentile(histogram: Mapping[int, int], pct: float) -> float:
    """Nearest-rank percentile of a {value: count} histogram."""
    total = sum(histogram.values())
    rank = max(1, -(-total * pct // 100))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    return 0.0


def backlog(tenants: Sequence[common.Tenant], count: int) -> list[Req]:
    """`count` sends round-robin over the tenants, one recipient each (as bench.dispatch)."""
    out = []
    for n in range(count):
        tenant = tenants[n % len(tenants)]
        body = json.dumps(common.sms_payload(f"+336{12000000 + n:08d}")).encode()
        out.append(
            Req("POST", SEND_PATH, {"Content-Type": "application/json", **tenant.auth}, body)
        )
    return out


# -- the phases ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one target measured, for the table."""

    accept: LoadResult | None = None
    accept_dispatched: float = 0.0  # msg/s sent while the load ran
    accept_tail: float = 0.0  # seconds from the end of the load to the last send
    accept_count: AtEmulator | None = None
    accept_statuses: Counter[str] = field(default_factory=Counter)
    preload: LoadResult | None = None
    sustained: float = 0.0
    overall: float = 0.0
    drain_wall: float = 0.0
    drain_count: AtEmulator | None = None
    drain_statuses: Counter[str] = field(default_factory=Counter)
    cpu: str = ""
    load: list[float] = field(default_factory=list)  # 1-minute load average at each phase


def accept_phase(
    ws: Workspace, target: Target, twilio: str, args: argparse.Namespace, figures: Figures
) -> None:
    figures.load.append(os.getloadavg()[0])
    database = target.fresh_database(ws, "accept")
    reset_emulator(twilio)
    gateways = start_instances(
        ws, target, DISPATCHER="on", TWILIO_API_BASE=twilio, DISPATCH_CONCURRENCY="8",
        DISPATCH_PER_SENDER_RATE=UNPACED, **database,
    )  # fmt: skip
    try:
        tenant = common.create_tenant(gateways[0], "bench-instances")
        headers = {"Content-Type": "application/json", **tenant.auth}
        if args.warmup > 0:
            common.log(f"{target.name}: accept warm-up {args.warmup:g} s")
            spread_wrk(gateways, headers, args.warmup, args.connections, 1, ws.dir)
        common.log(f"{target.name}: accept, measuring {args.seconds:g} s")
        began = time.time()
        result = spread_wrk(gateways, headers, args.seconds, args.connections, 2, ws.dir)
        ended = time.time()
        common.log(
            f"{target.name}: {result.rps:,.0f} sends/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, errors {result.errors}"
        )
        with common.timed(f"{target.name}: dispatching what was accepted"):
            figures.accept_statuses = wait_drained(database, 180)
        stamps = sent_stamps(database)
    finally:
        stop_all(ws, gateways)
    figures.accept = result
    figures.accept_dispatched = sum(began <= s <= ended for s in stamps) / (ended - began)
    figures.accept_tail = max(0.0, stamps[-1] - ended) if stamps else 0.0
    figures.accept_count = at_emulator(twilio, sum(figures.accept_statuses.values()))


def drain_phase(
    ws: Workspace, target: Target, twilio: str, args: argparse.Namespace, figures: Figures
) -> None:
    database = target.fresh_database(ws, "drain")
    loaders = start_instances(
        ws, Target(f"{target.name}: pre-load", 1), DISPATCHER="off", TWILIO_API_BASE=twilio,
        **database,
    )  # fmt: skip
    loader = loaders[0]
    try:
        tenants = [
            common.create_tenant(loader, f"bench-drain-{n:03d}", sender=f"+339390357{n:02d}")
            for n in range(args.tenants)
        ]
        with common.timed(f"{target.name}: pre-loading {args.messages:,} messages"):
            figures.preload = asyncio.run(
                common.count_loop(
                    loader.url,
                    backlog(tenants, args.messages),
                    count=args.messages,
                    connections=16,
                    unique_header="Idempotency-Key",
                )
            )
    finally:
        ws.stop(loader.proc)
    if figures.preload.errors:
        raise SystemExit(f"pre-load: {figures.preload.errors} requests failed")
    reset_emulator(twilio)
    figures.load.append(os.getloadavg()[0])
    pg_cpu = target.postgres.cpu_seconds() if target.postgres else 0.0
    started = time.time()
    gateways = start_instances(
        ws, target, DISPATCHER="on", TWILIO_API_BASE=twilio,
        DISPATCH_CONCURRENCY=str(args.concurrency),
        DISPATCH_PER_SENDER_RATE=f"{args.per_sender_rate:g}", **database,
    )  # fmt: skip
    try:
        with common.timed(f"{target.name}: draining"):
            figures.drain_statuses = wait_drained(database, args.messages / 50 + 90)
        figures.drain_wall = time.time() - started
        gw_cpu = sum(common.cpu_seconds(gw.proc.pid) for gw in gateways)
        if target.postgres:
            pg_cpu = target.postgres.cpu_seconds() - pg_cpu
            figures.cpu = f"{gw_cpu:.1f} s / {pg_cpu:.1f} s"
        else:
            figures.cpu = f"{gw_cpu:.1f} s / (in the gateway)"
    finally:
        stop_all(ws, gateways)
    stamps = sent_stamps(database)
    n = len(stamps)
    lo, hi = (stamps[n // 10], stamps[n * 9 // 10]) if n else (0.0, 0.0)
    figures.sustained = (n * 8 // 10) / (hi - lo) if hi > lo else 0.0
    figures.overall = n / (stamps[-1] - stamps[0]) if n > 1 and stamps[-1] > stamps[0] else 0.0
    figures.drain_count = at_emulator(twilio, sum(figures.drain_statuses.values()))


# -- the record ---------------------------------------------------------------------------------


def _statuses(counts: Counter[str]) -> str:
    return ", ".join(f"{status} {n:,}" for status, n in sorted(counts.items()))


ROWS = [
    "**accept: sends/s** (dispatcher on)",
    "accept: p50 / p99 ms",
    "accept: errors",
    "accept: load generator",
    "dispatched while the load ran (msg/s)",
    "last send after the load ended",
    "accept phase, rows by status (warm-up included)",
    "**accept phase: each accepted message exactly once at the emulator**",
    "drain: backlog pre-loaded through one instance (DISPATCHER=off)",
    "**drain: sustained msg/s** (10th→90th percentile of sent_at)",
    "drain: first → last sent (msg/s)",
    "drain: wall time, instance start included",
    "drain: rows by status",
    "**drain: each accepted message exactly once at the emulator**",
    "CPU during the drain: gateways / PostgreSQL",
    "1-minute load average at the start of accept / drain",
]


def column(f: Figures) -> list[str]:
    """One target's cells, in the order of ROWS."""
    accept, preload = f.accept, f.preload
    assert accept is not None and preload is not None
    assert f.accept_count is not None and f.drain_count is not None
    return [
        f"**{accept.rps:,.0f}**",
        f"{accept.p50_ms:.1f} / {accept.p99_ms:.1f}",
        f"{accept.errors:,}",
        accept.tool,
        f"{f.accept_dispatched:,.0f}",
        f"{f.accept_tail:.1f} s",
        _statuses(f.accept_statuses),
        f.accept_count.cell(),
        f"{preload.requests:,} at {preload.rps:,.0f}/s",
        f"**{f.sustained:,.0f}**",
        f"{f.overall:,.0f}",
        f"{f.drain_wall:.1f} s",
        _statuses(f.drain_statuses),
        f.drain_count.cell(),
        f.cpu,
        " / ".join(f"{v:.1f}" for v in f.load),
    ]


def report(figures: Sequence[Figures]) -> list[list[object]]:
    columns = [column(f) for f in figures]
    return [[label, *(cells[n] for cells in columns)] for n, label in enumerate(ROWS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured accept seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--messages", type=int, default=3_000, help="drain backlog")
    parser.add_argument("--tenants", type=int, default=50, help="drain tenants, one sender each")
    parser.add_argument("--concurrency", type=int, default=8, help="DISPATCH_CONCURRENCY")
    parser.add_argument("--per-sender-rate", type=float, default=50.0)
    parser.add_argument("--instances", type=int, default=3, help="the multi-instance target")
    parser.add_argument("--label", default="", help="a note for the RESULTS.md title")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load")
    args = parser.parse_args()
    if not 1 <= args.tenants <= 100:
        parser.error("--tenants must be between 1 and 100 (one sender number each)")
    if args.instances < 2 or args.connections < args.instances:
        parser.error("--instances must be at least 2 and at most --connections")
    if not common.have_wrk():
        raise SystemExit("wrk is needed (apt-get install wrk)")
    pinning = common.set_pinning(not args.no_pin)
    load_before = os.getloadavg()

    with common.Workspace() as ws, running_postgres() as pg:
        try:
            engine = pg.describe()
            targets = [
                Target("SQLite, 1 instance", 1),
                Target("PostgreSQL, 1 instance", 1, pg),
                Target(f"PostgreSQL, {args.instances} instances", args.instances, pg),
            ]
            _, twilio = common.start_twilio(ws, callback_delay=3600.0)
            figures = []
            for target in targets:
                measured = Figures()
                accept_phase(ws, target, twilio, args, measured)
                drain_phase(ws, target, twilio, args, measured)
                figures.append(measured)
        finally:  # every process this run started, before PostgreSQL stops
            for proc in list(ws.procs):
                ws.stop(proc)
    load_after = os.getloadavg()

    every_once = all(
        f.accept_count is not None and f.accept_count.exactly_once
        and f.drain_count is not None and f.drain_count.exactly_once
        for f in figures
    )  # fmt: skip
    lines = [
        "One run, three targets, each phase on a fresh database: "
        f"{', '.join(t.name for t in targets)} "
        f"(one database shared by the {args.instances}). {engine}: a throwaway server (initdb + "
        f"pg_ctl in a temporary directory, loopback), default durability; the gateways with "
        f"WRITE_CONNECTIONS and READ_CONNECTIONS at their defaults; SQLite with synchronous=FULL. "
        f"{pinning}" + (" (PostgreSQL with the gateways)" if not args.no_pin else "") + ". "
        "Twilio emulator in its own process, status callbacks held; LOG_LEVEL=INFO.",
        "",
        f"- accept: `POST {SEND_PATH}`, {args.seconds:g} s measured after {args.warmup:g} s "
        f"warm-up, {args.connections} connections in all (split over the instances, one wrk "
        f"each), a fresh Idempotency-Key and recipient per request; the dispatcher on "
        f"(DISPATCH_CONCURRENCY=8 per instance, DISPATCH_PER_SENDER_RATE={UNPACED}: pacing "
        f"never reached, 0 is refused; on PostgreSQL each send still takes its slot in the "
        f"database) sending to the emulator "
        f"under load.",
        f"- drain: {args.messages:,} messages over {args.tenants} tenants with a sender each, "
        f"accepted with DISPATCHER=off, then drained by the target's instances "
        f"(DISPATCH_CONCURRENCY={args.concurrency} each, DISPATCH_PER_SENDER_RATE="
        f"{args.per_sender_rate:g}: a cap of {args.tenants * args.per_sender_rate:,.0f}/s "
        "overall).",
        "",
        *common.table(["measure", *(t.name for t in targets)], report(figures)),
        "",
        f"- every accepted message reached the emulator exactly once, in every phase: "
        f"**{'yes' if every_once else 'NO'}**",
        f"- load average (1, 5, 15 min) before the run {_load(load_before)}, after it "
        f"{_load(load_after)}: other work shared this machine's {os.cpu_count()} cores, so "
        f"every rate here is lower, and every latency higher, than the code alone would give.",
    ]
    title = f"Issue 11 — PostgreSQL, 1 and {args.instances} instances"
    title += f" ({args.label})" if args.label else ""
    common.append_results(title, lines, record=not args.no_record)


def _load(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


@contextlib.contextmanager
def running_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    try:
        with common.timed("starting PostgreSQL"):
            server.start()
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    main()
