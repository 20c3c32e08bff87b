"""Accepted means durable: kill the gateway with SIGKILL while it dispatches, restart it, and
every accepted message ends sent — none lost, none sent twice (counted at the Twilio
emulator) — with twins (the same text to the same recipient from two tenants on the shared
number), answers lost on the way back, and a recipient with over a hundred newer messages."""

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
from tests.instances import all_messages, sms_tenant
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, stack_environ

MESSAGES = 200
HOT_RECIPIENT = "+33699999999"
HOT_MESSAGES = 120


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


def _plan() -> list[tuple[str, str, str]]:
    """(tenant, recipient, text): distinct messages, twins (the same recipient and text from
    both tenants on the shared number) and a recipient with more than a hundred messages."""
    plan = []
    for i in range(MESSAGES):
        plan.append(("acme", f"+336120{i:05d}", f"message {i:04d}"))
        if i % 3 == 0:
            plan.append(("globex", f"+336120{i:05d}", f"message {i:04d}"))  # a twin
        elif i % 3 == 1:
            plan.append(("globex", f"+336130{i:05d}", f"other {i:04d}"))
    plan += [("acme", HOT_RECIPIENT, f"hot {n:04d}") for n in range(HOT_MESSAGES)]
    return plan


@pytest.mark.slow
async def test_sigkill_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "wrangler_like.toml", project / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", project / "database")
    twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.05, hang_seconds=3)
    twilio.hang_every = 23  # lost answers, on top of the ones the kill loses
    plan = _plan()
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
                keys = {slug: await sms_tenant(http, admin, slug) for slug in ("acme", "globex")}
                gate = asyncio.Semaphore(16)

                async def accept(tenant: str, to: str, body: str) -> str:
                    async with gate:
                        response = await http.post(
                            "/api/channels/sms/send",
                            headers=keys[tenant],
                            json={"to": to, "body": body},
                        )
                    assert response.status_code == 202, response.text
                    return str(response.json()["id"])

                accepted = await asyncio.gather(*(accept(*item) for item in plan))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            sent_before_restart = len(twilio.messages)
            assert sent_before_restart < len(plan), "the kill should land mid-dispatch"

            process = start_gateway(project, environ, port)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                deadline = asyncio.get_running_loop().time() + 180  # a loaded machine
                while True:
                    listing = [m for key in keys.values() for m in await all_messages(http, key)]
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
    failures = [m["failure_reason"] for m in listing if m["status"] == "failed"]
    assert set(statuses) <= {"sent", "delivered"}, (statuses, failures[:3])
    wanted = Counter((to, body) for _, to, body in plan)
    at_emulator = Counter((m["to"], m["body"]) for m in twilio.messages)
    assert at_emulator == wanted, "each message sent once: twins twice, nothing more"
    sids = [m["provider_message_id"] for m in listing]
    assert len(set(sids)) == len(sids) == len(twilio.messages), "one provider id per message"
    by_sid = {m["sid"]: m for m in twilio.messages}
    for m in listing:
        sent = by_sid[m["provider_message_id"]]
        assert (sent["to"], sent["body"]) == (m["to"], m["body"]), m
