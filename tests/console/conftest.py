"""Browser tests of the console: a gateway served by uvicorn on loopback, wired to the
provider emulators (tests/stack.py) and a loopback SMTP server, driven by Playwright with
Debian's chromium (`playwright install` downloads browsers, which a machine without internet
cannot: scripts/test installs the `chromium` package instead).

Every page fixture fails its test on a script error, a console error or warning, or any
request to an address other than loopback (such requests are also aborted). The one console
error a browser prints by itself — "Failed to load resource: … status of 4xx" when a page
answers 401, 409, 422 or 429 on purpose — is not a script error and is let through for those
statuses only.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.sandbox.smtp_server import SmtpSandbox
from tests.conftest import ADMIN_KEY
from tests.stack import Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
]
SMTP_USER, SMTP_PASSWORD = "agent@acme.example", "smtp-password-0001"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_EXPECTED_STATUS = re.compile(
    r"^Failed to load resource: the server responded with a status of (401|409|422|429)\b"
)


def _browser_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


# Per module, not per session: Playwright's sync API runs an event loop of its own on the main
# thread while it is open, and pytest-asyncio's tests (another module's) need that thread free.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        _browser_unavailable(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); "
            "scripts/test does it when run as root or with sudo"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(username=SMTP_USER, password=SMTP_PASSWORD, tls_mode="starttls") as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSandbox) -> Iterator[Stack]:
    """One gateway per test module; each test makes tenants of its own."""
    with running_stack(
        tmp_path_factory.mktemp("console"),
        SMTP_CA_FILE=str(smtp.cert_path),
        SMTP_ALLOW_PRIVATE_HOSTS="true",
    ) as running:
        yield running


@dataclass
class Console:
    """The gateway under test, seen from the JSON API (to set up and to check what the
    console changed)."""

    stack: Stack
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    def tenant(self, name: str = "Cabinet Dupont") -> tuple[dict[str, Any], str]:
        """A new tenant (unique slug) and its API key."""
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + "-" + secrets.token_hex(4)
        created = self.http.post(
            "/admin/tenants", json={"name": name, "slug": slug}, headers=self.admin
        )
        assert created.status_code == 201, created.text
        body = created.json()
        return body["tenant"], str(body["api_key"])

    def get(self, path: str, key: str) -> Any:
        response = self.http.get(path, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def console(stack: Stack) -> Iterator[Console]:
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        yield Console(stack, http)


@dataclass
class Watch:
    """What a page did that a user should never see: script errors, console errors,
    requests leaving loopback."""

    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.outside, f"requests left loopback: {self.outside}"
        assert not self.errors, f"console errors: {self.errors}"


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def new_page(browser: Any, watch: Watch, console: Console) -> Iterator[Callable[..., Any]]:
    """Open a watched page (in a context of its own, with the browser language `locale`)."""
    contexts: list[Any] = []

    def route(request_route: Any) -> None:
        host = urlsplit(request_route.request.url).hostname or ""
        if host in LOOPBACK:
            request_route.continue_()
        else:
            watch.outside.append(request_route.request.url)
            request_route.abort()

    def on_console(message: Any) -> None:
        if message.type in ("error", "warning") and not _EXPECTED_STATUS.match(message.text):
            watch.errors.append(f"{message.type}: {message.text}")

    def open_page(locale: str = "en-US") -> Any:
        context = browser.new_context(locale=locale, base_url=console.url)
        contexts.append(context)
        context.route("**/*", route)
        opened = context.new_page()
        opened.on("console", on_console)
        opened.on("pageerror", lambda error: watch.errors.append(f"pageerror: {error}"))
        return opened

    yield open_page
    for context in contexts:
        context.close()
    watch.check()


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    return new_page()


def sign_in(page: Any, key: str) -> None:
    page.goto("/console/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/(tenants)?$"))


def htmx_click(page: Any, target: Any) -> None:
    """Click what sends an htmx request, and wait until its answer is swapped in (so the
    page read next is the new one, not the one before). Only the answer to the request the
    clicked element (or the form around it) sent counts: another request settling meanwhile,
    such as the SMS preview a typed text triggers, is not this click's answer."""
    target.evaluate(
        """(clicked) => {
            window.__settled = false;
            const mine = (event) => {
                const source = event.detail.requestConfig && event.detail.requestConfig.elt;
                if (source && (source === clicked || source.contains(clicked))) {
                    window.__settled = true;
                    document.body.removeEventListener("htmx:afterSettle", mine);
                }
            };
            document.body.addEventListener("htmx:afterSettle", mine);
        }"""
    )
    target.click()
    page.wait_for_function("() => window.__settled === true")
