"""Several `gateway serve` processes on one PostgreSQL database, for the tests (and the bench)
that show what N instances promise: started together, each on its own loopback port, with
the same settings; the Twilio emulator takes their sends."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.sandbox.server import free_port
from tests.conftest import ROOT
from tests.stack import stack_environ


@dataclass
class Instance:
    port: int
    log: Path
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@dataclass
class Instances:
    project: Path
    environ: dict[str, str]
    members: list[Instance] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.environ['ADMIN_API_KEY']}"}


def _spawn(project: Path, environ: dict[str, str], instance: Instance) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ENCRYPTION_"))}
    env.update(environ)
    with instance.log.open("a") as log:  # a pipe nobody reads would fill and block
        instance.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(instance.port)],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )


def _wait_ready(instance: Instance, deadline: float) -> None:
    assert instance.process is not None
    while True:
        try:
            if httpx.get(f"{instance.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if instance.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"an instance did not start: {instance.log.read_text()[-3000:]}")
        time.sleep(0.05)


@contextmanager
def running_instances(
    tmp_path: Path, database_url: str, twilio_url: str, count: int = 3, **extra: str
) -> Iterator[Instances]:
    """`count` instances started at the same moment (their migrations race: the advisory
    lock makes one apply them). Status callbacks go to the first instance."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "wrangler_like.toml", project / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", project / "database")
    members = [Instance(free_port(), project / f"instance-{n}.log") for n in range(count)]
    environ = stack_environ(project, members[0].port, twilio_url, **extra)
    environ["DATABASE_URL"] = database_url
    running = Instances(project, environ, members)
    try:
        for instance in members:
            _spawn(project, environ, instance)
        deadline = time.monotonic() + 60
        for instance in members:
            _wait_ready(instance, deadline)
        yield running
    finally:
        for instance in members:
            instance.kill()


async def sms_tenant(http: httpx.AsyncClient, admin: dict[str, str], slug: str) -> dict[str, str]:
    """A tenant made over HTTP with its SMS channel on; its key's header."""
    created = await http.post(
        "/admin/tenants", headers=admin, json={"name": slug.title(), "slug": slug}
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['api_key']}"}
    toggled = await http.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert toggled.status_code == 200, toggled.text
    return key


async def all_messages(http: httpx.AsyncClient, key: dict[str, str]) -> list[dict[str, Any]]:
    """Every message of the key's tenant, page after page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/api/messages", headers=key, params=params)).json()
        found += page["messages"]
        cursor = page["next_cursor"]
        if not cursor:
            return found
