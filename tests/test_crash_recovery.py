"""Accepted means durable: kill the gateway with SIGKILL while it dispatches, restart it, and
every accepted message ends sent or failed — none lost, none sent twice (counted at the
Twilio emulator)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.twilio_api import TwilioSandbox
from tests.conftest import ROOT
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, stack_environ

MESSAGES = 300


def start_gateway(project: Path, environ: dict[str, str], port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ENCRYPTION_"))}
    env.update(environ)
    log = (project / "gateway.log").open("a")  # a pipe nobody reads would fill and block
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    log.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gateway did not start: {(project / 'gateway.log').read_text()}")
        time.sleep(0.05)


@pytest.mark.slow
async def test_sigkill_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "wrangler_like.toml", project / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", project / "database")
    twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.05)
    with ServerThread(twilio.app) as emulator:
        port = free_port()
        environ = stack_environ(
            project,
            port,
            emulator.base_url,
            DISPATCH_PER_SENDER_RATE="150",
            DISPATCH_RECONCILE_SECONDS="1",
        )
        process = start_gateway(project, environ, port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                admin = {"Authorization": f"Bearer {environ['ADMIN_API_KEY']}"}
                created = await http.post(
                    "/admin/tenants", headers=admin, json={"name": "Acme", "slug": "acme"}
                )
                key = {"Authorization": f"Bearer {created.json()['api_key']}"}
                await http.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
                gate = asyncio.Semaphore(16)

                async def accept(i: int) -> str:
                    async with gate:
                        response = await http.post(
                            "/api/channels/sms/send",
                            headers=key,
                            json={"to": f"+336120{i:05d}", "body": f"message {i:04d}"},
                        )
                    assert response.status_code == 202, response.text
                    return str(response.json()["id"])

                accepted = await asyncio.gather(*(accept(i) for i in range(MESSAGES)))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            sent_before_restart = len(twilio.messages)
            assert sent_before_restart < MESSAGES, "the kill should land mid-dispatch"

            process = start_gateway(project, environ, port)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                deadline = asyncio.get_running_loop().time() + 60
                while True:
                    listing = []
                    cursor = None
                    while True:
                        page = (
                            await http.get(
                                "/api/messages",
                                headers=key,
                                params={"limit": 200, **({"cursor": cursor} if cursor else {})},
                            )
                        ).json()
                        listing += page["messages"]
                        cursor = page["next_cursor"]
                        if not cursor:
                            break
                    unsettled = [m for m in listing if m["status"] in ("queued", "sending")]
                    if not unsettled:
                        break
                    assert asyncio.get_running_loop().time() < deadline, unsettled[:3]
                    await asyncio.sleep(0.2)
        finally:
            process.kill()
            process.wait(10)

    assert sorted(m["id"] for m in listing) == sorted(accepted), "nothing lost"
    statuses = Counter(m["status"] for m in listing)
    assert set(statuses) <= {"sent", "delivered", "failed"}, statuses
    at_emulator = Counter(m["body"] for m in twilio.messages)
    twice = {body: n for body, n in at_emulator.items() if n > 1}
    assert twice == {}, "sent twice"
    for m in listing:
        if m["status"] != "failed":
            assert at_emulator[m["body"]] == 1, m
    assert statuses["failed"] == 0, "no provider failure was injected"
