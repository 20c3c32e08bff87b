from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.sandbox.server import free_port

ROOT = Path(__file__).resolve().parent.parent
K1 = base64.b64encode(b"1" * 32).decode()
K2 = base64.b64encode(b"2" * 32).decode()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`main()` configures the gateway's logging; later tests expect the default again."""
    logger = logging.getLogger("gateway")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.setLevel(level)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "wrangler_like.toml", tmp_path / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", tmp_path / "database")
    for name in list(os.environ):
        if name.startswith(("GATEWAY_", "ENCRYPTION_", "ADMIN_", "DATABASE_", "TWILIO_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_first_run_generates_secrets_and_says_so_once(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "migrate")
    assert code == 0
    assert "applied" in out and "0001_init.sql" in out
    assert "generated ADMIN_API_KEY and ENCRYPTION_KEY" in err
    assert (project / ".dev.vars").exists()
    assert (project / ".state" / "d1" / "channel-gateway.sqlite3").exists()
    code, out, err = run(capsys, "migrate")
    assert code == 0 and out.strip() == "no pending migrations"
    assert "generated" not in err


def test_tenant_and_key_commands(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "tenant", "create", "--name", "Acme", "--slug", "acme")
    assert code == 0
    created = json.loads(out)
    assert created["api_key"].startswith("cgw_")
    code, out, _ = run(capsys, "tenant", "list")
    assert [t["slug"] for t in json.loads(out)] == ["acme"]
    code, out, _ = run(capsys, "keys", "create", "--tenant", "acme", "--label", "ops")
    key = json.loads(out)
    assert key["label"] == "ops" and key["key"].startswith("cgw_")
    code, out, _ = run(capsys, "keys", "revoke", "--tenant", "acme", "--key-id", key["id"])
    assert code == 0 and json.loads(out) == {"revoked": key["id"]}
    code, _, err = run(capsys, "keys", "revoke", "--tenant", "acme", "--key-id", "key_nope")
    assert code == 1 and "No API key" in err
    code, _, err = run(capsys, "tenant", "create", "--name", "Again", "--slug", "acme")
    assert code == 1 and "already exists" in err
    code, _, err = run(
        capsys, "tenant", "create", "--name", "Tz", "--slug", "tz", "--timezone", "Mars/Base"
    )
    assert code == 1 and "time zone" in err


def test_bad_setting_fails_fast_with_one_line(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_API_KEY", "a" * 24)
    monkeypatch.setenv("ENCRYPTION_KEY", base64.b64encode(b"short").decode())
    code, _, err = run(capsys, "migrate")
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "ENCRYPTION_KEY must decode to 32 bytes" in err


def _store_email_secret(db_path: Path, keys: str) -> None:
    """Write an encrypted channel row through the real service, as the API would."""
    import asyncio

    from gateway.config import load_settings
    from gateway.db import TenantDB
    from gateway.services.channel_config import ChannelConfigService
    from gateway.services.tenants import create_tenant

    settings = load_settings(
        environ={"ADMIN_API_KEY": "a" * 24, "ENCRYPTION_KEYS": keys, "DATABASE_PATH": str(db_path)}
    )

    async def go() -> None:
        from gateway.app import Gateway

        gw = Gateway(settings, [])
        await gw.start()
        try:
            tenant, _ = await create_tenant(gw.db, "Acme", "acme", "Europe/Paris")
            await ChannelConfigService(settings).replace(
                TenantDB(gw.db, tenant.id),
                "email",
                {
                    "host": "smtp.example.com",
                    "from_email": "a@example.com",
                    "username": "a",
                    "password": "p@ss-word-1234",
                },
            )
        finally:
            await gw.stop()

    asyncio.run(go())


def test_rotation_lets_the_old_key_be_dropped(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = project / "rot.sqlite3"
    _store_email_secret(db_path, f"k1:{K1}")
    monkeypatch.setenv("ADMIN_API_KEY", "a" * 24)
    monkeypatch.setenv("DATABASE_PATH", str(db_path))

    monkeypatch.setenv("ENCRYPTION_KEYS", f"k2:{K2}")
    code, _, err = run(capsys, "tenant", "list")
    assert code == 2 and "k1" in err and err.strip().count("\n") == 0, "unknown key id"

    monkeypatch.setenv("ENCRYPTION_KEYS", f"k2:{K2},k1:{K1}")
    code, out, _ = run(capsys, "rotate-keys")
    assert code == 0 and "re-encrypted 1 channel configuration(s) under key k2" in out
    code, out, _ = run(capsys, "rotate-keys")
    assert "re-encrypted 0" in out

    monkeypatch.setenv("ENCRYPTION_KEYS", f"k2:{K2}")
    code, _, _ = run(capsys, "tenant", "list")
    assert code == 0
    import sqlite3

    from gateway.crypto import Keyring, aad_for

    row = (
        sqlite3.connect(db_path)
        .execute(
            "SELECT tenant_id, config_encrypted, key_id FROM channel_configurations "
            "WHERE channel_type = 'email'"
        )
        .fetchone()
    )
    assert row[2] == "k2"
    plain = Keyring.from_settings(f"k2:{K2}", None).decrypt(row[1], aad_for(row[0], "email"))
    assert json.loads(plain) == {"password": "p@ss-word-1234"}


def test_serve_starts_a_real_server(project: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ENCRYPTION_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json()["status"] == "ready"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert "generated ADMIN_API_KEY" in err
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert process.returncode in (0, -15)


def test_cron_runs_one_tick(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "cron")
    assert code == 0
    assert json.loads(out) == {"reminders": 0}


def test_sandbox_serves_the_emulators(project: Path) -> None:
    base = free_port()
    while any(_in_use(base + i) for i in range(4)):
        base = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sandbox", "--base-port", str(base)],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                twilio = httpx.get(f"http://127.0.0.1:{base}/_sandbox/messages", timeout=1)
                vapi = httpx.get(f"http://127.0.0.1:{base + 2}/_sandbox/calls", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert twilio.json()["messages"] == [] and vapi.status_code == 200
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=20)
    assert f"TWILIO_API_BASE=http://127.0.0.1:{base}" in out
    assert f"VAPI_API_BASE=http://127.0.0.1:{base + 2}" in out


def _in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
