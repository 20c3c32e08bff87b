"""A SQLite database is served by one process (issue 11 §3): a second `gateway serve` on the
same file refuses to start, naming the file and pointing to PostgreSQL, instead of running
its own rate limits and crons and taking the first one's sends in flight at start-up.
One-off commands keep working beside a running server; a stopped or crashed server leaves
no lock behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config import Settings, load_settings
from gateway.sandbox.server import free_port
from gateway.store.file_lock import DatabaseInUse, ServingLock
from gateway.wiring import Gateway
from tests.conftest import ADMIN_KEY, KEY_A, ROOT

HOLD = """
import sys, time
from pathlib import Path
from gateway.store.file_lock import ServingLock
lock = ServingLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_database_is_locked_by_one_holder_at_a_time(tmp_path: Path) -> None:
    database = tmp_path / "data" / "gateway.sqlite3"
    first, second = ServingLock(database), ServingLock(database)
    first.acquire()
    with pytest.raises(DatabaseInUse) as refused:
        second.acquire()
    message = str(refused.value)
    assert str(database) in message and f"pid {os.getpid()}" in message
    assert "PostgreSQL" in message
    assert not second.held
    first.release()
    second.acquire()  # free once released
    assert second.held
    second.release()


def test_a_crashed_holder_leaves_no_lock(tmp_path: Path) -> None:
    database = tmp_path / "gateway.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(database)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseInUse, match=f"pid {holder.pid}"):
            ServingLock(database).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)
    # the kernel closed the dead process's descriptors, and with them its lock
    lock = ServingLock(database)
    lock.acquire()
    lock.release()


def _settings(tmp_path: Path) -> Settings:
    environ = {
        "ADMIN_API_KEY": ADMIN_KEY,
        "ENCRYPTION_KEYS": f"k1:{KEY_A}",
        "DATABASE_PATH": str(tmp_path / "gateway.sqlite3"),
        "PUBLIC_BASE_URL": "https://gateway.test",
    }
    return load_settings(ROOT / "wrangler_like.toml", environ=environ)


async def test_a_second_server_gateway_is_refused_and_a_one_off_runs_beside(
    tmp_path: Path,
) -> None:
    serving = Gateway(_settings(tmp_path))
    await serving.start()
    try:
        second = Gateway(_settings(tmp_path))
        with pytest.raises(DatabaseInUse) as refused:
            await second.start()
        assert str(tmp_path / "gateway.sqlite3") in str(refused.value)
        await second.providers.aclose()
        await second.db.close()
        # what `gateway cron` builds: no dispatcher, no lock
        one_off = Gateway(_settings(tmp_path))
        one_off.run_dispatcher = False
        await one_off.start()
        try:
            assert await one_off.cron_tick() == {"reminders": 0}
        finally:
            await one_off.stop()
    finally:
        await serving.stop()
    after = Gateway(_settings(tmp_path))
    await after.start()  # the stopped server released the file
    await after.stop()


# -- `gateway serve` as real processes -----------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "wrangler_like.toml", tmp_path / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", tmp_path / "database")
    return tmp_path


def _environ(project: Path) -> dict[str, str]:
    prefixes = ("GATEWAY_", "ENCRYPTION_", "ADMIN_", "DATABASE_", "TWILIO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["DATABASE_PATH"] = str(project / "gateway.sqlite3")
    return env


def _gateway(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", *args]


class Server:
    def __init__(self, project: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            _gateway("serve", "--port", str(self.port)),
            cwd=project,
            env=_environ(project),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).is_success
            except httpx.TransportError:
                time.sleep(0.1)
        return False

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        _, err = self.process.communicate(timeout=30)
        return err


@pytest.fixture
def servers(project: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def test_a_second_serve_on_the_same_file_refuses_to_start(
    project: Path, servers: list[Server]
) -> None:
    first = Server(project)
    servers.append(first)
    assert first.ready()

    second = Server(project)
    servers.append(second)
    assert not second.ready(), "a second server started on the same SQLite file"
    err = second.stop()
    assert second.process.returncode not in (0, None)
    refusal = err.strip().splitlines()[-1]
    assert str(project / "gateway.sqlite3") in refusal
    assert f"pid {first.process.pid}" in refusal and "PostgreSQL" in refusal
    assert "Traceback" not in err

    # one-off commands run beside the server
    for command in (["cron"], ["migrate"], ["keyring"], ["tenant", "list"]):
        done = subprocess.run(
            _gateway(*command),
            cwd=project,
            env=_environ(project),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (command, done.stderr)

    first.stop()
    third = Server(project)
    servers.append(third)
    assert third.ready(), "a new server starts once the first one stopped"
