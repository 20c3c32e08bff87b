"""What every benchmark shares: the machine and the command for RESULTS.md, servers started
as child processes on free loopback ports (always stopped), the gateway's bench
configuration, tenants made through the API, and the load generators (wrk with a Lua script,
an httpx loop where wrk is absent, and an open-loop fixed-rate httpx generator).

Every load loop here is bounded by a duration or a count and stops by itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
HOST = "127.0.0.1"

ADMIN_KEY = "bench-admin-" + secrets.token_hex(16)
ENCRYPTION_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
ACCOUNT_SID = "AC" + secrets.token_hex(16)
AUTH_TOKEN = secrets.token_hex(16)
VAPI_KEY = "bench-vapi-" + secrets.token_hex(8)
VAPI_SECRET = "bench-vapi-secret-" + secrets.token_hex(8)
SHARED_NUMBER = "+33939035761"
SMS_BODY = "Votre rendez-vous est confirmé pour demain 10h. Répondez STOP pour ne plus recevoir."


# -- the record ---------------------------------------------------------------------------------


def machine() -> str:
    cores = os.cpu_count() or 0
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    described = f"{cores} cores, {mem_kib / 1024 / 1024:.1f} GiB RAM"
    if model:
        described += f", {model}"
    return described + f", Python {platform.python_version()}"


def command() -> str:
    """The command as typed from the repository root (no machine paths)."""
    spec = sys.modules["__main__"].__spec__
    module = spec.name if spec is not None else Path(sys.argv[0]).stem
    python = ".venv/bin/python" if Path(sys.executable).is_relative_to(ROOT) else "python"
    return " ".join([python, "-m", module, *(shlex.quote(a) for a in sys.argv[1:])])


def append_results(title: str, lines: Sequence[str], record: bool = True) -> None:
    """Append one run to bench/RESULTS.md: date, machine, exact command, then `lines`
    (printed only with `record=False`)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = [
        f"## {title} — {now}",
        "",
        f"- machine: {machine()}",
        f"- command: `{command()}`",
        "",
        *lines,
        "",
    ]
    print("\n".join(block))
    if not record:
        return
    new = not RESULTS.exists()
    with RESULTS.open("a") as fh:
        if new:
            fh.write("# Benchmark results\n\nEach run appends its section; newest last.\n\n")
        fh.write("\n".join(block) + "\n")
    print(f"(appended to {RESULTS.relative_to(ROOT)})")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes ----------------------------------------------------------------------------------


# On a small machine the load generator and the server fight for the same cores, and where
# the scheduler puts them moves results by ±20% from run to run. By default each server is
# pinned to the last core and the load generator to the others (taskset); --no-pin undoes it.
_PINNING: dict[str, str] = {}


def set_pinning(enabled: bool) -> str:
    """Pin servers to the last core and load generators to the rest; returns a description."""
    _PINNING.clear()
    cores = os.cpu_count() or 1
    if not enabled or cores < 2 or shutil.which("taskset") is None:
        return "Not pinned"
    _PINNING["server"] = str(cores - 1)
    _PINNING["load"] = "0" if cores == 2 else f"0-{cores - 2}"
    # this process (httpx loops, seeding) and the helpers it starts inherit the load cores
    pin_self("load")
    return (
        f"Server pinned to core {_PINNING['server']}, load generator to core(s) "
        f"{_PINNING['load']} (taskset)"
    )


def pinned(role: str) -> list[str]:
    """The taskset prefix for a `server`, `load` or `helper` process (helpers share the load
    generator's cores: emulators must not take the server's core)."""
    cpus = _PINNING.get("load" if role == "helper" else role)
    return ["taskset", "-c", cpus] if cpus else []


def pin_self(role: str) -> None:
    """Pin this Python process (an httpx load loop) like a child of that role."""
    cpus = _PINNING.get("load" if role == "helper" else role)
    if cpus and hasattr(os, "sched_setaffinity"):
        first, _, last = cpus.partition("-")
        os.sched_setaffinity(0, set(range(int(first), int(last or first) + 1)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """A child process in its own session, output to a log file; stop() ends it by pid."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], logdir: Path) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log: TextIO = self.log_path.open("w")
        self.popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)  # uvicorn: graceful shutdown
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: nothing from the caller's shell leaks into a server."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited at start:\n{proc.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:.0f} s:\n{proc.tail()}")


@contextlib.contextmanager
def connect(path: Path, *, read_only: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection to the gateway's database that is closed on exit (sqlite3's own context
    manager only commits; one left to the garbage collector may close, and checkpoint, at
    any time while the gateway runs). Commits on success when writable."""
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        conn = sqlite3.connect(path, timeout=60)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(rest.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU time so far of a process's main thread (the event loop) and of its
    other threads together (the database writer and readers, the DNS resolver)."""
    main = other = 0.0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                if int(task.name) == pid:
                    main += seconds
                else:
                    other += seconds
    return main, other


@dataclass
class Workspace:
    """A temp directory and the servers started in it; everything is stopped on exit, also
    on Ctrl-C (KeyboardInterrupt) and SIGTERM."""

    keep: bool = False
    dir: Path = field(init=False)
    procs: list[Proc] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Workspace:
        self._tmp = tempfile.TemporaryDirectory(prefix="gateway-bench-")
        self.dir = Path(self._tmp.name)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self._tmp is not None and not self.keep:
            self._tmp.cleanup()

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Proc:
        proc = Proc(name, argv, env, self.dir)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# -- servers ------------------------------------------------------------------------------------

BENCH_TOML = """\
# Written by bench/common.py for one benchmark run: the repository's configuration with a
# send rate limit no benchmark reaches, and its own database.
name = "channel-gateway-bench"

[vars]
SMS_PRICE_PER_SEGMENT = "0.07"
CALL_PRICE_PER_MINUTE = "0.15"
USD_EUR_RATE = "0.92"

[[d1_databases]]
binding = "DB"
database_name = "channel-gateway-bench"
database_id = "00000000-0000-4000-8000-00000000bench"
migrations_dir = "database/migrations"
migrations_table = "d1_migrations"

[triggers]
crons = ["* * * * *"]

[[ratelimits]]
name = "SEND_RATE_LIMITER"
namespace_id = "1001"
simple = { limit = 1000000000, period = 1 }
"""


@dataclass
class Gateway:
    proc: Proc
    url: str
    port: int
    db_path: Path  # the SQLite file (unused when database_url names PostgreSQL)
    database_url: str | None = None

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}


def gateway_environ(ws: Workspace, port: int, **extra: str) -> dict[str, str]:
    """The gateway's settings: its own TOML (huge rate limit) and database in the workspace.
    The migrations folder named in the TOML does not exist there, so the gateway falls back
    to the repository's own `database/migrations`. `DATABASE_URL=postgresql://…` in `extra`
    puts it on PostgreSQL instead (the URL wins over the SQLite file)."""
    toml = ws.dir / "bench.toml"
    toml.write_text(BENCH_TOML)
    return child_env(
        {
            "GATEWAY_CONFIG": str(toml),
            "ADMIN_API_KEY": ADMIN_KEY,
            "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "DATABASE_PATH": str(ws.dir / "gateway.sqlite3"),
            "PUBLIC_BASE_URL": f"http://{HOST}:{port}",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": SHARED_NUMBER,
            "VAPI_API_KEY": VAPI_KEY,
            "VAPI_WEBHOOK_SECRET": VAPI_SECRET,
            **extra,
        }
    )


def start_gateway(
    ws: Workspace,
    *,
    port: int | None = None,
    name: str = "gateway",
    wrapper: Sequence[str] = (),
    **settings: str,
) -> Gateway:
    """`gateway serve` (uvicorn as the CLI runs it) as a child process. `wrapper` prefixes
    the command (a profiler)."""
    port = port or free_port()
    env = gateway_environ(ws, port, **settings)
    argv = [
        *pinned("server"),
        *wrapper,
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    proc = ws.start(name, argv, env)
    url = f"http://{HOST}:{port}"
    wait_http(url + "/readyz", proc, timeout=60)
    return Gateway(proc, url, port, Path(env["DATABASE_PATH"]), env.get("DATABASE_URL"))


def start_ceiling(ws: Workspace) -> tuple[Proc, str]:
    port = free_port()
    proc = ws.start(
        "ceiling",
        [*pinned("server"), sys.executable, "-m", "bench.ceiling", "--port", str(port)],
        child_env(),
    )
    url = f"http://{HOST}:{port}"
    wait_http(url + "/", proc)
    return proc, url


def start_twilio(
    ws: Workspace, callback_delay: float, callback_concurrency: int = 8
) -> tuple[Proc, str]:
    """The Twilio emulator in its own process (gateway.sandbox.twilio_api.run)."""
    port = free_port()
    code = (
        "from gateway.sandbox.twilio_api import run; "
        f"run({HOST!r}, {port}, {ACCOUNT_SID!r}, {AUTH_TOKEN!r}, "
        f"callback_delay={callback_delay!r}, callback_concurrency={callback_concurrency})"
    )
    proc = ws.start("twilio", [sys.executable, "-c", code], child_env())
    url = f"http://{HOST}:{port}"
    wait_http(url + "/_sandbox/settings", proc)
    return proc, url


def start_vapi(ws: Workspace) -> str:
    """The Vapi emulator in its own process, answering at once (no latency)."""
    port = free_port()
    code = (
        "import uvicorn; from gateway.sandbox.vapi_api import VapiSandbox; "
        f"uvicorn.run(VapiSandbox({VAPI_KEY!r}).app, host={HOST!r}, port={port}, "
        "log_level='warning', access_log=False)"
    )
    proc = ws.start("vapi", [sys.executable, "-c", code], child_env())
    url = f"http://{HOST}:{port}"
    wait_http(url + "/_sandbox/calls", proc)
    return url


# -- the API ------------------------------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    slug: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def create_tenant(gw: Gateway, slug: str, *, sms: bool = True, sender: str | None = None) -> Tenant:
    """A tenant through the operator API, with SMS enabled through the tenant API."""
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        made = http.post(
            "/admin/tenants",
            json={"name": slug.replace("-", " ").title(), "slug": slug},
            headers=gw.admin,
        )
        made.raise_for_status()
        body = made.json()
        tenant = Tenant(body["tenant"]["id"], slug, body["api_key"])
        if sender:
            http.put(
                f"/admin/tenants/{tenant.id}/channels/sms/config",
                json={"sender": sender},
                headers=gw.admin,
            ).raise_for_status()
        if sms:
            http.post(
                "/api/channels/sms/toggle", json={"enabled": True}, headers=tenant.auth
            ).raise_for_status()
    return tenant


def sms_payload(to: str = "+33612345678") -> dict[str, Any]:
    return {"to": to, "body": SMS_BODY, "message_type": "appointment_reminder", "agent": "sara"}


# -- load ---------------------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    errors: int  # non-2xx/3xx answers and socket errors
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    p95_ms: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def have_wrk() -> bool:
    """wrk on the PATH, installed with apt-get first where it is missing and we are root: the
    httpx loop that stands in for it saturates its own core long before a server does (452
    req/s against the bare-Starlette ceiling), so a run without wrk measures the client."""
    if shutil.which("wrk") is None and shutil.which("apt-get") and os.geteuid() == 0:
        with timed("apt-get install wrk"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, check=False)
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    level = "="
    while f"]{level}]" in value:
        level += "="
    return f"[{level}[{value}]{level}]"


_WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d, " ..
    "\\"status_errors\\": %d, \\"p50\\": %d, \\"p90\\": %d, \\"p95\\": %d, " ..
    "\\"p99\\": %d, \\"max\\": %d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    e.status, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99),
    latency.max))
end
"""


def _wrk_script(requests: Sequence[Req], unique_header: str | None) -> str:
    """Lua that cycles through `requests` (pre-formatted in init), or repeats the single one
    with a fresh `unique_header` value per request."""
    entries = []
    for req in requests:
        headers = ", ".join(
            f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in sorted(req.headers.items())
        )
        entries.append(
            f"{{{_lua_string(req.method)}, {_lua_string(req.path)}, {{{headers}}}, "
            f"{_lua_string(req.body.decode())}}}"
        )
    # LuaJIT allows 65,536 constants per function: each chunk is built in its own function
    script = "local reqs = {}\n"
    for first in range(0, len(entries), 2000):
        chunk = ",\n".join(entries[first : first + 2000])
        script += (
            f"for _, r in ipairs((function() return {{\n{chunk}\n}} end)()) do "
            "reqs[#reqs + 1] = r end\n"
        )
    script += """
local counter = 0
local tag = ""
local formatted = {}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tag", tostring(threads) .. "-" .. tostring(os.time()))
end
function init(args)
  tag = wrk.thread:get("tag") or "t"
  for i, r in ipairs(reqs) do formatted[i] = wrk.format(r[1], r[2], r[3], r[4]) end
end
"""
    if unique_header:
        script += f"""
function request()
  counter = counter + 1
  local r = reqs[(counter - 1) % #reqs + 1]
  local h = {{}}
  for k, v in pairs(r[3]) do h[k] = v end
  h[ {_lua_string(unique_header)} ] = "bench-" .. tag .. "-" .. counter
  return wrk.format(r[1], r[2], h, r[4])
end
"""
    else:
        script += """
function request()
  counter = counter + 1
  return formatted[(counter - 1) % #formatted + 1]
end
"""
    return script + _WRK_DONE


def run_wrk(
    url: str,
    requests: Sequence[Req],
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    unique_header: str | None = None,
    workdir: Path,
) -> LoadResult:
    return run_wrk_script(
        url,
        _wrk_script(requests, unique_header),
        seconds=seconds,
        connections=connections,
        threads=threads,
        workdir=workdir,
    )


def run_wrk_script(
    url: str, script: str, *, seconds: float, connections: int, threads: int = 1, workdir: Path
) -> LoadResult:
    """wrk on the load cores for `seconds`, running a Lua `script` that ends with the
    BENCHJSON report (`_WRK_DONE`)."""
    path = workdir / f"wrk-{secrets.token_hex(4)}.lua"
    path.write_text(script)
    argv = [
        *pinned("load"),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(path),
        url,
    ]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False, cwd=workdir
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    data = json.loads(line[len("BENCHJSON ") :])
    return LoadResult(
        tool=f"wrk -t{threads} -c{connections}",
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p95_ms=data["p95"] / 1000,
        p99_ms=data["p99"] / 1000,
        max_ms=data["max"] / 1000,
    )


async def _closed_loop(
    url: str,
    requests: Sequence[Req],
    seconds: float,
    connections: int,
    unique_header: str | None,
    count: int | None = None,
    request_timeout: float = 10.0,
) -> LoadResult:
    """`connections` httpx clients back to back, for `seconds` or until `count` requests."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=request_timeout) as http:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors, issued
            while time.perf_counter() < deadline and (count is None or issued < count):
                issued += 1
                req = requests[(issued - 1) % len(requests)]
                headers = dict(req.headers)
                if unique_header:
                    headers[unique_header] = f"bench-{start:.0f}-{issued}"
                began = time.perf_counter()
                try:
                    response = await http.request(
                        req.method, req.path, headers=headers, content=req.body
                    )
                    if response.status_code >= 400:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    ms = [v * 1000 for v in latencies]
    return LoadResult(
        tool=f"httpx closed loop x{connections}",
        requests=len(latencies),
        seconds=elapsed,
        errors=errors,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms, default=0.0),
    )


def closed_loop(
    url: str,
    requests: Sequence[Req],
    *,
    seconds: float,
    connections: int,
    unique_header: str | None = None,
    workdir: Path,
    force_httpx: bool = False,
) -> LoadResult:
    """`connections` clients sending back to back for `seconds`: wrk when installed."""
    if have_wrk() and not force_httpx:
        return run_wrk(
            url,
            requests,
            seconds=seconds,
            connections=connections,
            unique_header=unique_header,
            workdir=workdir,
        )
    return asyncio.run(_closed_loop(url, requests, seconds, connections, unique_header))


def measure(
    label: str,
    url: str,
    requests: Sequence[Req],
    *,
    seconds: float,
    warmup: float,
    connections: int,
    workdir: Path,
    unique_header: str | None = None,
    warmup_requests: Sequence[Req] | None = None,
    force_httpx: bool = False,
) -> LoadResult:
    """A warm-up (on `warmup_requests` when given), then the measured closed-loop run."""
    if warmup > 0:
        log(f"{label}: warm-up {warmup:g} s")
        closed_loop(
            url,
            warmup_requests or requests,
            seconds=warmup,
            connections=connections,
            unique_header=unique_header,
            workdir=workdir,
            force_httpx=force_httpx,
        )
    log(f"{label}: measuring {seconds:g} s")
    result = closed_loop(
        url,
        requests,
        seconds=seconds,
        connections=connections,
        unique_header=unique_header,
        workdir=workdir,
        force_httpx=force_httpx,
    )
    log(
        f"{label}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms, errors {result.errors}"
    )
    return result


def ceiling_request() -> Req:
    """The ceiling's request: the same SMS JSON body the send benchmark posts."""
    body = json.dumps(sms_payload()).encode()
    return Req("POST", "/ceiling", {"Content-Type": "application/json"}, body)


def result_row(name: str, r: LoadResult) -> list[object]:
    return [
        name,
        fmt(r.rps, 0),
        f"{r.p50_ms:.2f}",
        f"{r.p90_ms:.2f}",
        f"{r.p99_ms:.2f}",
        f"{r.errors:,}",
    ]


RESULT_HEADER = ["target", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors"]


async def count_loop(
    url: str,
    requests: Sequence[Req],
    *,
    count: int,
    connections: int,
    unique_header: str | None = None,
    limit_seconds: float = 600.0,
) -> LoadResult:
    """Exactly `count` requests (round-robin over `requests`) from `connections` clients,
    back to back; stops early after `limit_seconds`."""
    return await _closed_loop(
        url, requests, limit_seconds, connections, unique_header, count=count, request_timeout=30.0
    )


async def open_loop(
    url: str,
    requests: Sequence[Req],
    *,
    rate: float,
    count: int,
    max_in_flight: int = 64,
    check: bool = True,
) -> tuple[LoadResult, list[httpx.Response]]:
    """Send `count` requests at a fixed `rate` (requests/s) whatever the answers' pace
    (open loop). A request's latency counts from its scheduled time, so a server that falls
    behind is not hidden by a generator that waits for it."""
    latencies: list[float] = []
    responses: list[httpx.Response] = []
    errors = 0
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    gate = asyncio.Semaphore(max_in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05

        async def one(index: int, scheduled: float) -> None:
            nonlocal errors
            req = requests[index % len(requests)]
            async with gate:
                try:
                    response = await http.request(
                        req.method, req.path, headers=req.headers, content=req.body
                    )
                except httpx.HTTPError:
                    errors += 1
                    return
                latencies.append(loop.time() - scheduled)
                if response.status_code >= 400:
                    errors += 1
                if check:
                    responses.append(response)

        tasks = []
        for index in range(count):
            scheduled = start + index / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    ms = [v * 1000 for v in latencies]
    result = LoadResult(
        tool=f"httpx open loop {rate:g}/s",
        requests=len(latencies),
        seconds=elapsed,
        errors=errors,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms, default=0.0),
    )
    return result, responses


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    began = time.perf_counter()
    log(f"{label} …")
    yield
    log(f"{label}: {time.perf_counter() - began:.1f} s")


async def _roll_up(db_path: Path) -> int:
    from gateway.db import Database
    from gateway.services.rollup_job import RollupJob

    db = Database(db_path)
    db.start()
    try:
        return await RollupJob(db).catch_up()
    finally:
        await db.close()


def roll_up(db_path: Path) -> tuple[int, float]:
    """What `gateway rollups` does, on a seeded file the gateway is not serving: the
    analytics rollups brought up to date. (steps, seconds)."""
    began = time.perf_counter()
    steps = asyncio.run(_roll_up(db_path))
    return steps, time.perf_counter() - began
