"""Jasmin 0.11.1 on this machine, for the peer benchmark: Debian's RabbitMQ and Redis started
as plain child processes (not system services) on loopback and free ports with their data in
the run's temporary directory, jasmind from its own virtualenv (cached between runs), its
configuration file, then jCli to add the SMPP connector, the default MT route and the HTTP
user. Every process is started in its own session and stopped with its whole group, so
Erlang's helpers (epmd, erl_child_setup, inet_gethost) go with it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bench.common import HOST, Proc, Workspace
from bench.peer.jcli import JCli

VERSION = "0.11.1"
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # the script, not the wrapper
DEBIAN_PACKAGES = ("rabbitmq-server", "redis-server")
CONNECTOR = "bench-smsc"


class GroupProc(Proc):
    """A child whose whole process group is stopped: SIGTERM, then SIGKILL."""

    def stop(self, timeout: float = 20.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        # the leader (RabbitMQ's shell script) may exit before its children (beam.smp) do
        deadline = time.monotonic() + timeout
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._group_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        # a killed process runs on until the kernel has torn it down: return only once none does
        deadline = time.monotonic() + 5
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._log.close()

    def _group_alive(self) -> bool:
        """Any process of the group still running (zombies waiting to be reaped do not count)."""
        self.popen.poll()  # reap the leader once it exits
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
                if int(group) == self.pid and state != "Z":
                    return True
        return False


def start_group(ws: Workspace, name: str, argv: list[str], env: Mapping[str, str]) -> GroupProc:
    proc = GroupProc(name, argv, env, ws.dir)
    ws.procs.append(proc)
    return proc


def wait_port(port: int, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited at start:\n{proc.tail()}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"{proc.name} did not listen on {port} within {timeout:.0f} s:\n{proc.tail()}"
    )


# -- installation -------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gateway-bench"


def ensure_debian_packages() -> None:
    binaries = (RABBITMQ_SERVER, Path("/usr/bin/redis-server"))
    missing = [
        package
        for package, binary in zip(DEBIAN_PACKAGES, binaries, strict=True)
        if not binary.exists()
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"install {' '.join(missing)} first (apt-get install {' '.join(missing)})")
    with common.timed(f"apt-get install {' '.join(missing)}"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        # Debian's policy-rc.d (or no init) keeps the services from starting: we start them
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       check=True, env=env)  # fmt: skip


def ensure_jasmin() -> Path:
    """The virtualenv holding jasmin==VERSION (made once, kept in the user's cache)."""
    venv = cache_dir() / f"jasmin-{VERSION}"
    if not (venv / "bin" / "jasmind.py").exists():
        with common.timed(f"pip install jasmin=={VERSION} into {venv}"):
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, f"jasmin=={VERSION}"], check=True)
    return venv


def amqp_spec(venv: Path) -> Path:
    """AMQP 0-9-1's spec, which Jasmin's AMQP client (txamqp) needs at run time; the wheel
    does not carry Jasmin's copy (its `resource/amqp0-9-1.xml`), txamqp ships the same one."""
    found = sorted(venv.glob("lib/python*/site-packages/txamqp/specs/standard/amqp0-9-1*.xml"))
    if not found:
        raise SystemExit(f"no amqp0-9-1 spec in {venv} (txamqp missing?)")
    return found[0]


# -- the broker and the cache -------------------------------------------------------------------


def start_rabbitmq(ws: Workspace) -> int:
    """epmd (our own, on a free port) and a RabbitMQ node; returns the AMQP port."""
    base = ws.dir / "rabbitmq"
    base.mkdir()
    (base / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
    (base / "enabled_plugins").write_text("[].\n")
    epmd_port, amqp_port, dist_port = common.free_port(), common.free_port(), common.free_port()
    erlang = {"HOME": str(base), "ERL_EPMD_PORT": str(epmd_port), "ERL_EPMD_ADDRESS": HOST}
    epmd = start_group(ws, "epmd", ["epmd", "-address", HOST, "-port", str(epmd_port)],
                       common.child_env(erlang))  # fmt: skip
    wait_port(epmd_port, epmd, 10)
    env = common.child_env(
        {
            **erlang,
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": f"bench-{secrets.token_hex(4)}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(amqp_port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        }
    )
    rabbit = start_group(ws, "rabbitmq", [*common.pinned("server"), str(RABBITMQ_SERVER)], env)
    wait_port(amqp_port, rabbit, 120)
    return amqp_port


def start_redis(ws: Workspace) -> int:
    port = common.free_port()
    data = ws.dir / "redis"
    data.mkdir()
    argv = [*common.pinned("server"), "redis-server", "--bind", HOST, "--port", str(port),
            "--dir", str(data), "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--protected-mode", "yes"]  # fmt: skip
    proc = start_group(ws, "redis", argv, common.child_env())
    wait_port(port, proc, 30)
    return port


# -- jasmind ------------------------------------------------------------------------------------


@dataclass
class Jasmin:
    http_url: str
    jcli_port: int
    username: str
    password: str
    proc: Proc


JASMIN_CFG = """\
# Written by bench/peer/jasmin.py for one run: every listener on loopback, free ports.
[smpp-server]
bind = {host}
port = {smpp_server}

[smpp-server-pb]
bind = {host}
port = {smpp_server_pb}

[client-management]
bind = {host}
port = {client_management}
store_path = {store}

[router]
bind = {host}
port = {router}
store_path = {store}

[http-api]
bind = {host}
port = {http}

[jcli]
bind = {host}
port = {jcli}
authentication = False

[amqp-broker]
host = {host}
port = {amqp}
spec = {spec}

[redis-client]
host = {host}
port = {redis}

[interceptor-client]
host = {host}
port = {interceptor}
"""

# jasmind takes a lock at the fixed path /tmp/jasmind; a killed run would leave it behind
# and block the next one, so the lock goes to this run's directory instead
_LAUNCH = """\
import lockfile, os, runpy, sys
_real = lockfile.FileLock
_path = os.path.join(os.environ["JASMIN_LOCK_DIR"], "jasmind")
lockfile.FileLock = lambda path, *a, **k: _real(_path, *a, **k)
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def start_jasmind(ws: Workspace, venv: Path, amqp: int, redis: int) -> Jasmin:
    home = ws.dir / "jasmin"
    for sub in ("store", "log", "resource"):
        (home / sub).mkdir(parents=True)
    ports = {name: common.free_port() for name in
             ("smpp_server", "smpp_server_pb", "client_management", "router", "http", "jcli",
              "interceptor")}  # fmt: skip
    cfg = home / "jasmin.cfg"
    cfg.write_text(JASMIN_CFG.format(host=HOST, store=home / "store", amqp=amqp, redis=redis,
                                     spec=amqp_spec(venv), **ports))  # fmt: skip
    launcher = home / "launch.py"
    launcher.write_text(_LAUNCH)
    env = common.child_env(
        {
            "ROOT_PATH": str(home),
            "CONFIG_PATH": str(home),
            "LOG_PATH": str(home / "log"),
            "STORE_PATH": str(home / "store"),
            "RESOURCE_PATH": str(home / "resource"),
            "JASMIN_LOCK_DIR": str(home),
        }
    )
    argv = [*common.pinned("server"), str(venv / "bin" / "python"), str(launcher),
            str(venv / "bin" / "jasmind.py"), "--config", str(cfg)]  # fmt: skip
    proc = start_group(ws, "jasmind", argv, env)
    wait_port(ports["jcli"], proc, 60)
    wait_port(ports["http"], proc, 30)
    url = f"http://{HOST}:{ports['http']}"
    # jCli takes passwords of at most 8 characters
    return Jasmin(url, ports["jcli"], "bench", secrets.token_hex(4), proc)


def configure(jasmin: Jasmin, smsc_port: int) -> None:
    """Through jCli: the SMPP connector to our message centre (no throughput cap), started;
    the default MT route to it; a group and the HTTP API's user."""
    with JCli(HOST, jasmin.jcli_port) as cli:
        cli.run(["smppccm -a", f"cid {CONNECTOR}", f"host {HOST}", f"port {smsc_port}",
                 "username bench", "password bench", "submit_throughput 0", "ok"],
                "Successfully added")  # fmt: skip
        cli.run([f"smppccm -1 {CONNECTOR}"], "Successfully started")
        cli.run(["mtrouter -a", "type DefaultRoute", f"connector smppc({CONNECTOR})",
                 "rate 0.00", "ok"], "Successfully added")  # fmt: skip
        cli.run(["group -a", "gid bench", "ok"], "Successfully added")
        cli.run(["user -a", f"username {jasmin.username}", f"password {jasmin.password}",
                 "gid bench", "uid bench", "ok"], "Successfully added")  # fmt: skip


def http_api_log(ws: Workspace) -> Path:
    return ws.dir / "jasmin" / "log" / "http-api.log"  # LOG_PATH set by start_jasmind


class AcceptedCount:
    """Messages Jasmin's HTTP API accepted so far: one `SMS-MT` line each in its log, read
    on from where the last call stopped."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.count = 0
        self._offset = 0
        self._partial = b""

    def __call__(self) -> int:
        with contextlib.suppress(FileNotFoundError), self.log.open("rb") as fh:
            fh.seek(self._offset)
            data = self._partial + fh.read()
            self._offset = fh.tell()
            *lines, self._partial = data.split(b"\n")
            self.count += sum(1 for line in lines if b" SMS-MT " in line)
        return self.count
