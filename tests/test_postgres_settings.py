"""Choosing PostgreSQL: `DATABASE_URL` (or a `[[hyperdrive]]` binding's
`localConnectionString`) puts the gateway on PostgreSQL instead of the SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gateway.config import Settings, load_settings
from gateway.db import Database
from gateway.errors import ConfigError
from gateway.migrations import migrate
from gateway.sandbox.server import free_port
from gateway.store.engine import DatabaseError
from gateway.store.postgres import PostgresEngine
from gateway.wiring import open_database
from tests.conftest import ROOT, running_api

HYPERDRIVE = """
[[hyperdrive]]
binding = "HYPERDRIVE"
id = "00000000000000000000000000000000"
localConnectionString = "{url}"
"""


def test_without_a_url_the_gateway_stays_on_sqlite(environ: dict[str, str]) -> None:
    environ.pop("DATABASE_URL", None)  # GATEWAY_TEST_ENGINE=postgres sets one
    settings = load_settings(ROOT / "wrangler_like.toml", environ=environ)
    assert settings.database_url is None
    assert isinstance(open_database(settings), Database)


def test_database_url_must_be_postgresql_and_is_never_echoed(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ConfigError, match=r"^DATABASE_URL must be a postgresql:// URL$"):
        make_settings(DATABASE_URL="mysql://root:hunter2@db/gateway")
    settings = make_settings(DATABASE_URL="postgresql://gw:hunter2@db.internal:5432/gateway")
    assert "hunter2" not in repr(settings) and "hunter2" not in repr(settings.typed)
    assert isinstance(open_database(settings), PostgresEngine)


def _project(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "wrangler_like.toml"
    config.write_text((ROOT / "wrangler_like.toml").read_text() + HYPERDRIVE.format(url=url))
    return config


def test_a_hyperdrive_binding_is_used_unless_database_url_wins(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    environ.pop("DATABASE_URL", None)
    config = _project(tmp_path, "postgresql://gw@127.0.0.1:5432/from_toml")
    assert load_settings(config, environ=environ).database_url == (
        "postgresql://gw@127.0.0.1:5432/from_toml"
    )
    chosen = load_settings(config, environ={**environ, "DATABASE_URL": "postgres://gw@h/env"})
    assert chosen.database_url == "postgres://gw@h/env"
    bad = tmp_path / "bad" / "wrangler_like.toml"
    bad.parent.mkdir()
    bad.write_text(config.read_text().replace("postgresql://gw@", "http://gw@"))
    with pytest.raises(ConfigError, match="hyperdrive"):
        load_settings(bad, environ=environ)


def test_an_unreachable_database_stops_the_migrations_in_one_line(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(DATABASE_URL=f"postgresql://gw@127.0.0.1:{free_port()}/none")
    with pytest.raises(DatabaseError, match=r"^PostgreSQL did not answer"):
        migrate(settings)


async def test_the_gateway_keeps_its_data_in_postgres(
    make_settings: Callable[..., Settings], empty_postgres_url: str
) -> None:
    settings = make_settings(DATABASE_URL=empty_postgres_url)
    async with running_api(settings) as api:
        tenant, key = await api.create_tenant("acme")
        channels = await api.client.get("/api/channels", headers=key)
        assert channels.status_code == 200 and len(channels.json()["channels"]) == 4
        ready = await api.client.get("/readyz")
        assert ready.status_code == 200, ready.text
    with psycopg.connect(empty_postgres_url) as conn:
        row = conn.execute("SELECT slug FROM tenants WHERE id = %s", (tenant["id"],)).fetchone()
        applied = conn.execute("SELECT count(*) FROM d1_migrations").fetchone()
    assert row == ("acme",)
    assert applied is not None and applied[0] == len(
        list((ROOT / "database/migrations").glob("*.sql"))
    )
    assert not settings.database_path.exists(), "nothing written to the SQLite file"


def test_the_cli_migrates_and_writes_postgres(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    empty_postgres_url: str,
) -> None:
    import logging

    from gateway.cli import main

    (tmp_path / "wrangler_like.toml").write_text((ROOT / "wrangler_like.toml").read_text())
    monkeypatch.chdir(tmp_path)  # no database/ here: the package's own folders are used
    for name, value in {
        "ADMIN_API_KEY": "admin-test-key-0123456789abcdef",
        "ENCRYPTION_KEY": "A" * 43 + "=",
        "DATABASE_URL": empty_postgres_url,
    }.items():
        monkeypatch.setenv(name, value)
    logger = logging.getLogger("gateway")
    saved = list(logger.handlers), logger.propagate, logger.level
    try:
        assert main(["migrate"]) == 0
        files = len(list((ROOT / "database" / "migrations_postgres").glob("*.sql")))
        assert capsys.readouterr().out.startswith(f"applied {files} migration(s): 0001_init")
        assert main(["tenant", "create", "--name", "Acme", "--slug", "acme"]) == 0
        capsys.readouterr()
        assert main(["tenant", "create", "--name", "Again", "--slug", "acme"]) == 1
        assert "acme" in capsys.readouterr().err
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
    with psycopg.connect(empty_postgres_url) as conn:
        assert conn.execute("SELECT slug FROM tenants").fetchall() == [("acme",)]
    assert not (tmp_path / ".state").exists(), "no SQLite file"
