from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.config import Settings, load_settings
from tests import startup_cache

# a throwaway PostgreSQL, and GATEWAY_TEST_ENGINE=postgres to run the gateway on it
pytest_plugins = ("tests.postgres",)
# the OpenAPI document and the system trust store, built once per session, not per app start
startup_cache.install()

ROOT = Path(__file__).resolve().parent.parent

# The daily exchange-rate feed of every gateway a test starts, subprocesses included: never
# the network (nothing listens on port 9; the gateway falls back to USD_EUR_RATE).
os.environ.setdefault("EXCHANGE_RATE_URL", "http://127.0.0.1:9/eurofxref-daily.xml")
ADMIN_KEY = "admin-test-key-0123456789abcdef"
KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
# the operator's Twilio account, for in-process tests that accept SMS without sending them
TWILIO = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "TWILIO_PHONE_NUMBER": "+33939035761",
    "TWILIO_API_BASE": "http://127.0.0.1:9",
}


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """A clean environment for load_settings: nothing leaks in from the developer's shell."""
    from tests.postgres import engine_environ  # after pytest_plugins registered it

    return {
        "ADMIN_API_KEY": ADMIN_KEY,
        "ENCRYPTION_KEYS": f"k1:{KEY_A}",
        "DATABASE_PATH": str(tmp_path / "gateway.sqlite3"),
        "PUBLIC_BASE_URL": "https://gateway.test",
        # the daily exchange-rate feed: never the network in tests (nothing listens there)
        "EXCHANGE_RATE_URL": "http://127.0.0.1:9/eurofxref-daily.xml",
        # in-process tests check what is accepted; end-to-end tests (tests/stack.py) send
        "DISPATCHER": "off",
        "PATH": os.environ.get("PATH", ""),
        **engine_environ(tmp_path),
    }


@pytest.fixture
def make_settings(environ: dict[str, str]) -> Callable[..., Settings]:
    def make(**overrides: str) -> Settings:
        return load_settings(ROOT / "wrangler_like.toml", environ={**environ, **overrides})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


class Api:
    """An httpx client on the app in-process, with helpers for the common calls."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    async def create_tenant(
        self, slug: str, name: str | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        response = await self.client.post(
            "/admin/tenants", json={"name": name or slug.title(), "slug": slug}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return body["tenant"], {"Authorization": f"Bearer {body['api_key']}"}


class FakeResolver:
    """DNS for tests, from a table: never the network. A name not in it does not resolve."""

    def __init__(self, answers: dict[str, Sequence[str]] | None = None) -> None:
        self.answers = dict(answers or {})
        self.asked: list[str] = []

    async def __call__(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        return list(self.answers.get(host, ()))


def use_resolver(gateway: Any, resolver: Any) -> None:
    """Point the SMTP host checks, at save time and at connect time, at `resolver`."""
    gateway.channels.smtp_hosts = dataclasses.replace(
        gateway.channels.smtp_hosts, resolver=resolver
    )
    adapter = gateway.providers.sender("smtp")
    adapter.hosts = dataclasses.replace(adapter.hosts, resolver=resolver)


async def start_api(settings: Settings) -> tuple[Starlette, httpx.AsyncClient]:
    startup_cache.seed_sqlite(settings)
    app = create_app(settings)
    # in-process tests never resolve a host name through real DNS
    use_resolver(app.state.gateway, FakeResolver())
    await app.state.gateway.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="https://gateway.test")
    return app, client


@contextlib.asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    """The app in-process with these settings, stopped afterwards."""
    app, client = await start_api(settings)
    try:
        yield Api(app, client)
    finally:
        await client.aclose()
        await app.state.gateway.stop()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running
