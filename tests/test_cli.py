from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.config import parse_dotenv
from gateway.crypto import fingerprint_id
from gateway.sandbox.server import free_port, free_port_block

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


def test_keys_create_takes_scopes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "tenant", "create", "--name", "Acme", "--slug", "acme")
    code, out, _ = run(capsys, "keys", "create", "--tenant", "acme", "--scopes", "send, read")
    assert code == 0 and json.loads(out)["scopes"] == ["read", "send"]
    code, out, _ = run(capsys, "keys", "create", "--tenant", "acme")
    assert code == 0 and json.loads(out)["scopes"] == ["read", "send", "config"]
    for bad, says in (("read,admin", "unknown scope 'admin'"), (",", "no scope named")):
        with pytest.raises(SystemExit) as refused:
            run(capsys, "keys", "create", "--tenant", "acme", "--scopes", bad)
        assert refused.value.code == 2 and says in capsys.readouterr().err


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
        from gateway.wiring import Gateway

        gw = Gateway(settings)
        await gw.start()
        try:
            tenant, _ = await create_tenant(gw.db, "Acme", "acme", "Europe/Paris")
            await ChannelConfigService(settings).replace(
                TenantDB(gw.db, tenant.id),
                "email",
                {
                    "host": "93.184.215.14",  # public, and an IP: no DNS look-up
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
            "SELECT tenant_id, config_encrypted, key_id, secrets_version "
            "FROM channel_configurations WHERE channel_type = 'email'"
        )
        .fetchone()
    )
    assert row[2] == "k2"
    assert row[3] == 2, "saved once, rotated once: each write binds a new version"
    plain = Keyring.from_settings(f"k2:{K2}", None).decrypt(
        row[1], aad_for(row[0], "email", row[3])
    )
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
    base = free_port_block(5)
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


# -- onboarding: what a new user meets ---------------------------------------------------------


def _one_line(err: str) -> bool:
    return err.strip() != "" and "\n" not in err.strip() and "Traceback" not in err


def test_serve_with_an_unknown_sms_provider_stops_before_listening(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ENCRYPTION_"))}
    env.update(ADMIN_API_KEY="a" * 24, ENCRYPTION_KEY=K1, SMS_PROVIDERS="telnyx,twillio")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", str(free_port())],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,  # a gateway that starts anyway never returns: the test fails here
    )
    assert done.returncode == 2
    assert _one_line(done.stderr), done.stderr
    assert "SMS_PROVIDERS names an unknown provider 'twillio'" in done.stderr
    assert "listening" not in done.stderr


@pytest.mark.parametrize(
    ("stored_under", "configured"),
    [
        # a single ENCRYPTION_KEY other than the one the secrets were written with
        (f"{fingerprint_id(b'1' * 32)}:{K1}", {"ENCRYPTION_KEY": K2}),
        # a keyring whose key id is right but whose key is not
        (f"k1:{K1}", {"ENCRYPTION_KEYS": f"k1:{K2}"}),
    ],
    ids=["other-key", "same-id-other-key"],
)
def test_serve_with_a_key_that_cannot_read_the_secrets_stops_with_one_line(
    project: Path, stored_under: str, configured: dict[str, str]
) -> None:
    db_path = project / "keys.sqlite3"
    _store_email_secret(db_path, stored_under)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ENCRYPTION_"))}
    env.update(ADMIN_API_KEY="a" * 24, DATABASE_PATH=str(db_path), **configured)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", str(free_port())],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,  # a gateway that starts anyway never returns: the test fails here
    )
    assert done.returncode == 2
    assert _one_line(done.stderr), done.stderr
    assert "configuration error" in done.stderr and "key" in done.stderr


def test_every_command_reports_an_unreadable_key_in_one_line(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = project / "keys.sqlite3"
    _store_email_secret(db_path, f"k1:{K1}")
    monkeypatch.setenv("ADMIN_API_KEY", "a" * 24)
    monkeypatch.setenv("DATABASE_PATH", str(db_path))
    monkeypatch.setenv("ENCRYPTION_KEYS", f"k2:{K2},k1:{K2}")  # k1 is the wrong key
    for command in (["rotate-keys"], ["tenant", "list"], ["keyring"], ["cron"]):
        code, out, err = run(capsys, *command)
        assert code == 2 and _one_line(err), (command, err)
        assert "'k1'" in err and out == ""
    monkeypatch.setenv("ENCRYPTION_KEYS", "k1:not-a-key")
    code, _, err = run(capsys, "serve", "--port", str(free_port()))
    assert code == 2 and _one_line(err) and "ENCRYPTION_KEYS entry 'k1'" in err


def test_key_rotation_recipe_from_the_readme(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "migrate")  # first start: keys generated into .dev.vars
    [generated_id] = re.findall(r"ENCRYPTION_KEY \(key id (k[0-9a-f]{8})\)", err)
    dev_vars = project / ".dev.vars"
    raw = parse_dotenv(dev_vars.read_text())["ENCRYPTION_KEY"]
    _store_email_secret(project / ".state/d1/channel-gateway.sqlite3", f"{generated_id}:{raw}")
    code, out, _ = run(capsys, "keyring")
    assert code == 0
    assert json.loads(out) == {
        "primary": generated_id,
        "keys": [generated_id],
        "in_use": {generated_id: 1},
    }

    def append(output: str) -> None:
        with dev_vars.open("a") as fh:
            fh.write(output)

    code, out, _ = run(capsys, "keyring", "add")  # gateway keyring add >> .dev.vars
    assert code == 0 and out.startswith("ENCRYPTION_KEYS=") and out.count("\n") == 1
    append(out)
    code, out, _ = run(capsys, "keyring")
    new_id, old_id = json.loads(out)["keys"]
    assert old_id == generated_id and new_id != generated_id
    code, out, _ = run(capsys, "rotate-keys")
    assert code == 0 and f"re-encrypted 1 channel configuration(s) under key {new_id}" in out
    code, out, _ = run(capsys, "keyring", "prune")  # gateway keyring prune >> .dev.vars
    assert code == 0 and generated_id not in out
    append(out)
    code, out, _ = run(capsys, "keyring")
    assert json.loads(out) == {"primary": new_id, "keys": [new_id], "in_use": {new_id: 1}}
    code, _, err = run(capsys, "tenant", "list")
    assert code == 0, err


def test_prune_keeps_a_key_that_still_encrypts_secrets(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = project / "keys.sqlite3"
    _store_email_secret(db_path, f"k1:{K1}")
    monkeypatch.setenv("ADMIN_API_KEY", "a" * 24)
    monkeypatch.setenv("DATABASE_PATH", str(db_path))
    monkeypatch.setenv("ENCRYPTION_KEYS", f"k2:{K2},k1:{K1}")
    code, out, err = run(capsys, "keyring", "prune")
    assert code == 0 and out.strip() == f"ENCRYPTION_KEYS=k2:{K2},k1:{K1}"
    assert "k1 still encrypt" in err and "rotate-keys" in err


def test_tenant_create_validates_like_the_api(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "tenant", "create", "--name", "Acme", "--slug", "acme", "--country", "be"
    )
    assert code == 0, err
    assert json.loads(out)["tenant"]["country"] == "BE"
    for bad, field in (
        (["--slug", "acme-uk", "--country", "XX"], "country"),
        (["--slug", "acme-uk", "--country", "GBR"], "country"),
        (["--slug", "Not A Slug"], "slug"),
        (["--slug", "acme-mars", "--timezone", "Mars/Base"], "timezone"),
    ):
        code, _, err = run(capsys, "tenant", "create", "--name", "Acme UK", *bad)
        assert code == 1 and _one_line(err) and err.startswith(f"gateway: {field} "), err
    code, out, _ = run(capsys, "tenant", "list")
    assert [(t["slug"], t["country"]) for t in json.loads(out)] == [("acme", "BE")]


def test_sandbox_settings_block_is_complete_and_stable(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first, _ = run(capsys, "sandbox", "--print-settings", "--base-port", "9100")
    assert code == 0
    values = parse_dotenv(first)  # appendable to .dev.vars as it is
    assert values["TWILIO_API_BASE"] == "http://127.0.0.1:9100"
    assert values["WHATSAPP_GRAPH_BASE"] == values["D360_API_BASE"] == "http://127.0.0.1:9101"
    assert values["VAPI_API_BASE"] == "http://127.0.0.1:9102"
    for name in (
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_PHONE_NUMBER",
        "VAPI_API_KEY",
        "VAPI_WEBHOOK_SECRET",
    ):
        assert values[name], name
    assert values["SMTP_ALLOW_PRIVATE_HOSTS"] == "true"
    ca_file = Path(values["SMTP_CA_FILE"])
    assert ca_file.is_relative_to(project.resolve() / ".state") and ca_file.is_file()
    pem = ca_file.read_bytes()
    code, second, _ = run(capsys, "sandbox", "--print-settings", "--base-port", "9100")
    assert second == first and ca_file.read_bytes() == pem, "the same block, the same CA"

    (project / ".dev.vars").write_text(first)
    code, _, err = run(capsys, "migrate")  # a gateway accepts the block as its settings
    assert code == 0, err


def test_sandbox_delivers_whatsapp_webhooks_and_serves_smtp_with_the_printed_ca(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import smtplib
    import ssl

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from gateway.sandbox.server import ServerThread
    from gateway.sandbox.whatsapp_api import sign_meta_payload

    received: list[tuple[str, dict[str, str], bytes]] = []

    async def webhook(request: Request) -> Response:
        received.append((request.url.path, dict(request.headers), await request.body()))
        return Response()

    receiver = Starlette(routes=[Route("/webhooks/whatsapp/{slug}", webhook, methods=["POST"])])
    base = free_port_block(5)
    with ServerThread(receiver) as gateway_side:
        monkeypatch.setenv("PUBLIC_BASE_URL", gateway_side.base_url)
        _, block, _ = run(capsys, "sandbox", "--print-settings", "--base-port", str(base))
        values = parse_dotenv(block)
        pem = Path(values["SMTP_CA_FILE"]).read_bytes()
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "sandbox", "--base-port", str(base)),
                *("--whatsapp", "106540352242922=acme"),
            ],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            send = f"{values['WHATSAPP_GRAPH_BASE']}/v21.0/106540352242922/messages"
            deadline = time.monotonic() + 20
            while True:
                try:
                    sent = httpx.post(
                        send,
                        headers={"Authorization": "Bearer sandbox-meta-token"},
                        json={
                            "messaging_product": "whatsapp",
                            "to": "33612345678",
                            "type": "text",
                            "text": {"body": "Bonjour"},
                        },
                        timeout=2,
                    )
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            assert sent.status_code == 200
            tls = ssl.create_default_context(cafile=values["SMTP_CA_FILE"])
            with smtplib.SMTP("127.0.0.1", base + 3, timeout=5) as smtp:
                smtp.starttls(context=tls)  # verified against the printed CA file
                smtp.login("sandbox", "sandbox-smtp-pass")
            while len(received) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(timeout=20)
    assert [path for path, _, _ in received] == ["/webhooks/whatsapp/acme"] * 3
    for _, headers, raw in received:
        assert headers["x-hub-signature-256"] == sign_meta_payload(raw, "sandbox-app-secret")
    statuses = [
        json.loads(raw)["entry"][0]["changes"][0]["value"]["statuses"][0] for *_, raw in received
    ]
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert Path(values["SMTP_CA_FILE"]).read_bytes() == pem, "the CA is kept across runs"
