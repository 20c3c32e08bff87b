"""A gateway served by real uvicorn on loopback, wired to the provider emulators, for
end-to-end tests: every provider call and every callback crosses a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from gateway.config import load_settings
from gateway.sandbox.server import ServerThread, free_port
from gateway.sandbox.twilio_api import TwilioSandbox
from tests.conftest import ACCOUNT_SID, ADMIN_KEY, AUTH_TOKEN, KEY_A, ROOT
from tests.postgres import engine_environ
from tests.startup_cache import seed_sqlite

__all__ = ["ACCOUNT_SID", "AUTH_TOKEN"]
SHARED_NUMBER = "+33939035761"

FAST_DISPATCH = {
    "DISPATCH_BACKOFF_SECONDS": "0.02",
    "DISPATCH_BACKOFF_MAX_SECONDS": "0.1",
    "DISPATCH_RECONCILE_SECONDS": "0.3",
    # a send not found at the provider is resent once its window (timeout + skew) closed
    "DISPATCH_RECONCILE_SKEW_SECONDS": "3",
    "DISPATCH_POLL_SECONDS": "0.05",
    "PRICE_FETCH_DELAY_SECONDS": "0.05",
    "PROVIDER_TIMEOUT_SECONDS": "1",
}


def stack_environ(tmp_path: Path, port: int, twilio_url: str, **extra: str) -> dict[str, str]:
    return {
        "ADMIN_API_KEY": ADMIN_KEY,
        "ENCRYPTION_KEYS": f"k1:{KEY_A}",
        "DATABASE_PATH": str(tmp_path / "gateway.sqlite3"),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": SHARED_NUMBER,
        "TWILIO_API_BASE": twilio_url,
        "EXCHANGE_RATE_URL": "http://127.0.0.1:9/eurofxref-daily.xml",  # never the network
        **FAST_DISPATCH,
        **engine_environ(tmp_path),
        **extra,
    }


@dataclass
class Stack:
    url: str
    twilio: TwilioSandbox
    app: Any
    admin: dict[str, str]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)

    async def tenant(
        self, http: httpx.AsyncClient, slug: str, channels: tuple[str, ...] = ("sms",)
    ) -> dict[str, str]:
        response = await http.post(
            "/admin/tenants", json={"name": slug.title(), "slug": slug}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        key = {"Authorization": f"Bearer {response.json()['api_key']}"}
        for channel in channels:
            toggled = await http.post(
                f"/api/channels/{channel}/toggle", json={"enabled": True}, headers=key
            )
            assert toggled.status_code == 200, toggled.text
        return key


@contextmanager
def running_stack(tmp_path: Path, **extra: str) -> Iterator[Stack]:
    with ExitStack() as stack:
        twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.01)
        twilio_server = stack.enter_context(ServerThread(twilio.app))
        port = free_port()
        environ = stack_environ(tmp_path, port, twilio_server.base_url, **extra)
        settings = load_settings(ROOT / "wrangler_like.toml", environ=environ)
        seed_sqlite(settings)
        app = create_app(settings)
        server = stack.enter_context(ServerThread(app, port=port))
        yield Stack(server.base_url, twilio, app, {"Authorization": f"Bearer {ADMIN_KEY}"})


async def eventually(check: Callable[[], Any], within: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async or sync check until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
