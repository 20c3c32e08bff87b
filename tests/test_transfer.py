"""`gateway export` / `gateway import`: a SQLite gateway with data in every table moves to
PostgreSQL and back, row for row, and answers the same; a target with rows, a file of
another schema version and a file cut short are refused with nothing written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import Settings, load_settings
from gateway.db import Database
from gateway.migrations import apply_migrations, discover
from gateway.sandbox.server import ServerThread
from gateway.sandbox.twilio_webhooks import inbound_sms_params, post_signed_form
from gateway.sandbox.vapi_api import VapiSandbox, vapi_call
from gateway.store import transfer
from gateway.store.engine import Engine
from gateway.store.postgres import PostgresEngine
from gateway.store.transfer_schema import quote, tables
from tests.conftest import ADMIN_KEY, KEY_A, ROOT, running_api
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, SHARED_NUMBER, Stack, running_stack
from tests.test_phone_e2e import (
    ASSISTANT,
    CALLER,
    SECRET,
    VAPI_KEY,
    incoming_call,
    messenger,
    phone_tenant,
)
from tests.test_sms_e2e import wait_status

run = asyncio.run
MIGRATIONS = ROOT / "database" / "migrations"
EXPECTED = [m.name for m in discover(MIGRATIONS)]
CLIENT = "+33612345678"
EMAIL = {
    "host": "smtp.example.com",
    "port": 587,
    "security": "starttls",
    "username": "agent@example.com",
    "password": "app-password-1234abcd",
    "from_email": "agent@example.com",
}
# the tables the populated gateway below fills (tables added later may stay empty)
FILLED = {
    "tenants",
    "api_keys",
    "channel_configurations",
    "tenant_numbers",
    "channel_messages_log",
    "message_events",
    "suppressions",
    "call_logs",
    "rendez_vous",
    "qualified_prospects",
    "tickets",
}


# -- a gateway with data in every table -----------------------------------------------------------


async def _fill(stack: Stack) -> None:
    url, admin = stack.url, stack.admin
    async with stack.client() as http:
        tenant_id, key = await phone_tenant(stack, http)
        saved = await http.post("/api/channels/email/config", json=EMAIL, headers=key)
        assert saved.status_code == 200, saved.text
        for label in ("crm-sync", "old"):
            made = await http.post(
                f"/admin/tenants/{tenant_id}/api-keys", json={"label": label}, headers=admin
            )
            assert made.status_code == 201, made.text
        revoked = await http.delete(
            f"/admin/tenants/{tenant_id}/api-keys/{made.json()['id']}", headers=admin
        )
        assert revoked.status_code in (200, 204), revoked.text
        other = await http.post(
            "/admin/tenants", json={"name": "Agence Léa", "slug": "agence"}, headers=admin
        )
        assert other.status_code == 201, other.text

        answer = await incoming_call(stack, http)
        assert answer.status_code == 200, answer.text
        call_id = (await http.get("/api/calls", headers=key)).json()["calls"][0]["vapi_call_id"]
        call = vapi_call(ASSISTANT, CALLER, call_id=call_id)
        vapi = messenger(stack, http)
        start = (datetime.now(UTC) + timedelta(days=2)).replace(
            hour=9, minute=0, second=0, microsecond=0
        )
        tools = await vapi.tool_calls(
            call,
            [
                ("book_appointment", {"name": "Léa Martin", "start": start.isoformat()}),
                ("qualify_prospect", {"name": "Paul", "project": "buy", "budget": 300000.5}),
                ("create_ticket", {"subject": "Fuite d'eau", "priority": "high"}),
            ],
        )
        assert all("result" in r for r in tools.json()["results"]), tools.text
        began = datetime.now(UTC) - timedelta(seconds=95)
        report = await vapi.end_of_call_report(
            call, began, began + timedelta(seconds=95), 0.12, summary="Réservé", transcript="…"
        )
        assert report.status_code == 200, report.text

        sent = await http.post(
            "/api/channels/sms/send",
            json={"to": CLIENT, "body": "Bonjour 👋, votre dossier est prêt"},
            headers={**key, "Idempotency-Key": "dossier-1"},
        )
        assert sent.status_code == 202, sent.text
        await wait_status(http, key, sent.json()["id"], "delivered")
        stop = inbound_sms_params(CLIENT, SHARED_NUMBER, "STOP", ACCOUNT_SID)
        reply = await post_signed_form(http, f"{url}/webhooks/twilio/sms", stop, AUTH_TOKEN)
        assert reply.status_code == 200

        async def settled() -> bool:
            listing = (await http.get("/api/messages", headers=key)).json()["messages"]
            outbound = [m for m in listing if m["direction"] == "outbound"]
            return len(outbound) == 2 and all(
                m["status"] == "delivered" and m["provider_cost"] is not None for m in outbound
            )

        for _ in range(200):
            if await settled():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the messages did not settle")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite gateway database with rows in every table, built through the API."""
    place = tmp_path_factory.mktemp("source")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GATEWAY_TEST_ENGINE", "sqlite")  # the source is SQLite on either run
        sandbox = VapiSandbox(VAPI_KEY)
        with (
            ServerThread(sandbox.app) as vapi,
            running_stack(
                place,
                VAPI_API_BASE=vapi.base_url,
                VAPI_API_KEY=VAPI_KEY,
                VAPI_WEBHOOK_SECRET=SECRET,
            ) as stack,
        ):
            asyncio.run(_fill(stack))
    return place / "gateway.sqlite3"


@pytest.fixture(scope="module")
def exported(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "gateway.jsonl"
    asyncio.run(_export(Database(source), path))
    return path


async def _export(db: Engine, path: Path) -> transfer.Summary:
    db.start()
    try:
        return await transfer.export_file(db, path, EXPECTED)
    finally:
        await db.close()


async def _import(db: Engine, path: Path) -> transfer.Summary:
    db.start()
    try:
        return await transfer.import_file(db, path, EXPECTED)
    finally:
        await db.close()


def copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: the main file and what its WAL still holds."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def _normalised(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


async def rows_of(db: Engine) -> dict[str, list[list[Any]]]:
    """Every data table's rows, in primary-key order, columns by name."""

    def read(conn: Any) -> dict[str, list[list[Any]]]:
        found: dict[str, list[list[Any]]] = {}
        for table in tables(conn):
            columns = ", ".join(quote(c) for c in sorted(table.columns))
            order = ", ".join(quote(c) for c in table.key)
            rows = conn.execute(
                f"SELECT {columns} FROM {quote(table.name)} ORDER BY {order}"
            ).fetchall()
            found[table.name] = [[_normalised(v) for v in row] for row in rows]
        return found

    db.start()
    try:
        return await db.read_fn(read)
    finally:
        await db.close()


def _environ(tmp_path: Path, url: str | None) -> dict[str, str]:
    environ = {
        "ADMIN_API_KEY": ADMIN_KEY,
        "ENCRYPTION_KEYS": f"k1:{KEY_A}",
        "DATABASE_PATH": str(tmp_path / "gateway.sqlite3"),
        "PUBLIC_BASE_URL": "https://gateway.test",
        "DISPATCHER": "off",
        "PATH": os.environ.get("PATH", ""),
    }
    if url:
        environ["DATABASE_URL"] = url
    return environ


def settings_on(tmp_path: Path, url: str | None = None) -> Settings:
    return load_settings(ROOT / "wrangler_like.toml", environ=_environ(tmp_path, url))


async def answers(settings: Settings) -> dict[str, Any]:
    """What a tenant sees: its messages, its KPIs, an appointment, its calls, tickets and
    prospects; and what the operator sees of the tenants."""
    async with running_api(settings) as api:
        admin = api.admin
        tenants = (await api.client.get("/admin/tenants", headers=admin)).json()
        tenant_id = next(t["id"] for t in tenants["tenants"] if t["slug"] == "cabinet")
        made = await api.client.post(
            f"/admin/tenants/{tenant_id}/api-keys", json={"label": "reader"}, headers=admin
        )
        key = {"Authorization": f"Bearer {made.json()['key']}"}
        found: dict[str, Any] = {"tenants": tenants}
        today = datetime.now(UTC).date()
        period = f"start={today - timedelta(days=7)}&end={today + timedelta(days=7)}"
        for path in (
            "/api/messages",
            f"/api/metrics/messages?{period}",
            f"/api/metrics/calls?{period}",
            "/api/appointments",
            "/api/calls",
            "/api/tickets",
            "/api/prospects",
            "/api/channels/email/config",
        ):
            response = await api.client.get(path, headers=key)
            assert response.status_code == 200, (path, response.text)
            found[path] = response.json()
        appointment_id = found["/api/appointments"]["appointments"][0]["id"]
        one = await api.client.get(f"/api/appointments/{appointment_id}", headers=key)
        found["appointment"] = one.json()
        message_id = found["/api/messages"]["messages"][0]["id"]
        found["message"] = (await api.client.get(f"/api/messages/{message_id}", headers=key)).json()
        return found


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project folder for `main()`: its own TOML and migrations, a clean environment."""
    shutil.copy(ROOT / "wrangler_like.toml", tmp_path / "wrangler_like.toml")
    shutil.copytree(ROOT / "database", tmp_path / "database")
    for name in list(os.environ):
        if name.startswith(("ENCRYPTION_", "ADMIN_", "DATABASE_", "TWILIO_", "GATEWAY_ENV")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ADMIN_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("ENCRYPTION_KEYS", f"k1:{KEY_A}")
    logger = logging.getLogger("gateway")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield tmp_path
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.setLevel(level)


def gateway_cli(
    capsys: pytest.CaptureFixture[str],
    project: Path,
    *args: str,
    database: Path,
    url: str | None = None,
) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_PATH", str(database))
        if url:
            patch.setenv("DATABASE_URL", url)
        code = main([*args, "--config", str(project / "wrangler_like.toml")])
    out, err = capsys.readouterr()
    return code, out, err


# -- the move -------------------------------------------------------------------------------------


def test_a_sqlite_gateway_moves_to_postgresql_row_for_row(
    source: Path,
    postgres_url: str,
    cli_env: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = run(rows_of(Database(source)))
    assert {name for name, rows in before.items() if rows} >= FILLED
    path = tmp_path / "move.jsonl"

    code, out, err = gateway_cli(capsys, cli_env, "export", str(path), database=source)
    assert code == 0, err
    total = sum(len(rows) for rows in before.values())
    assert f"exported {total} rows of {len(before)} tables" in out
    assert "ENCRYPTION_KEY(S)" in err and "k1" in err
    assert path.stat().st_mode & 0o077 == 0, "the file is readable by its owner only"

    code, out, err = gateway_cli(
        capsys, cli_env, "import", str(path), database=tmp_path / "unused.sqlite3", url=postgres_url
    )
    assert code == 0, err
    assert f"imported {total} rows" in out and "PostgreSQL" in out
    assert err == ""  # the keyring holds the key the credentials were encrypted with

    after = run(rows_of(PostgresEngine(postgres_url)))
    assert after == before


def test_the_imported_gateway_answers_as_the_source_did(
    source: Path, exported: Path, postgres_url: str, tmp_path: Path
) -> None:
    run(_import(PostgresEngine(postgres_url), exported))
    copy = tmp_path / "copy"
    copy.mkdir()
    copy_database(source, copy / "gateway.sqlite3")  # reading the source must not change it
    on_sqlite = run(answers(settings_on(copy)))
    on_postgres = run(answers(settings_on(tmp_path, postgres_url)))
    assert on_postgres["/api/messages"]["messages"], "there are messages to compare"
    assert on_postgres["/api/channels/email/config"]["secrets"]["password"]["set"] is True
    assert on_postgres == on_sqlite


def test_postgresql_moves_back_to_sqlite(
    source: Path, exported: Path, postgres_url: str, tmp_path: Path
) -> None:
    run(_import(PostgresEngine(postgres_url), exported))
    back = tmp_path / "back.jsonl"
    summary = run(_export(PostgresEngine(postgres_url), back))
    assert summary.source == "postgres"
    target = tmp_path / "back.sqlite3"
    apply_migrations(target, MIGRATIONS)
    run(_import(Database(target), back))
    assert run(rows_of(Database(target))) == run(rows_of(Database(source)))


# -- refusals -------------------------------------------------------------------------------------


def test_a_target_with_rows_is_refused_and_keeps_its_rows(
    exported: Path,
    postgres_url: str,
    cli_env: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def one_tenant() -> None:
        async with running_api(settings_on(tmp_path, postgres_url)) as api:
            await api.create_tenant("already-here")

    run(one_tenant())
    before = run(rows_of(PostgresEngine(postgres_url)))

    code, _, err = gateway_cli(
        capsys, cli_env, "import", str(exported), database=tmp_path / "x.sqlite3", url=postgres_url
    )
    assert code == 1
    assert "not empty" in err and "tenants" in err and "nothing written" in err
    assert run(rows_of(PostgresEngine(postgres_url))) == before


def test_a_file_of_another_schema_version_is_refused(
    exported: Path, postgres_url: str, tmp_path: Path
) -> None:
    lines = exported.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["migrations"] = [*header["migrations"], "9999_from_the_future.sql"]
    header["schema_version"] = "9999_from_the_future.sql"
    other = tmp_path / "future.jsonl"
    other.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))

    with pytest.raises(transfer.TransferError, match=r"9999_from_the_future\.sql"):
        run(_import(PostgresEngine(postgres_url), other))
    assert not any((run(rows_of(PostgresEngine(postgres_url)))).values())


def test_a_truncated_file_is_refused_with_nothing_written(
    exported: Path, postgres_url: str, tmp_path: Path
) -> None:
    data = exported.read_bytes()
    # cut inside the rows of a table loaded after the tenants: some rows were already in
    cut = data.index(b'{"table":"message_events"')
    for name, piece in (("mid-line", data[: cut + 10]), ("whole-lines", data[:cut])):
        short = tmp_path / f"{name}.jsonl"
        short.write_bytes(piece)
        with pytest.raises(transfer.TransferError, match="truncated"):
            run(_import(PostgresEngine(postgres_url), short))
        assert not any((run(rows_of(PostgresEngine(postgres_url)))).values())


def test_a_damaged_row_is_refused_with_nothing_written(
    exported: Path, postgres_url: str, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(exported.read_bytes().replace("Léa Martin".encode(), b"Lea Martin", 1))
    with pytest.raises(transfer.TransferError, match="damaged"):
        run(_import(PostgresEngine(postgres_url), damaged))
    assert not any((run(rows_of(PostgresEngine(postgres_url)))).values())


def test_a_target_not_migrated_is_refused(exported: Path, empty_postgres_url: str) -> None:
    with pytest.raises(transfer.TransferError, match="gateway migrate"):
        run(_import(PostgresEngine(empty_postgres_url), exported))


def test_a_database_behind_the_gateways_migrations_is_not_exported(tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for migration in discover(MIGRATIONS)[:2]:
        shutil.copy(migration.path, partial / migration.name)
    database = tmp_path / "old.sqlite3"
    apply_migrations(database, partial)
    path = tmp_path / "old.jsonl"
    with pytest.raises(transfer.TransferError, match="gateway migrate"):
        run(_export(Database(database), path))
    assert not path.exists() and not list(tmp_path.glob("*.partial"))
