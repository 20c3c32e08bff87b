"""Screenshots of the console for the README: docs/console-hub.png and docs/console-dashboard.png.

Starts the Twilio emulator, a loopback SMTP server and a gateway on a scratch database (all on
127.0.0.1, removed at the end), sets up a demo tenant through the JSON API as the README's tour
does (phone, SMS and email configured and on, WhatsApp left to do), adds 90 days of message
history with bench/seed.py, then signs in with Debian's chromium and photographs the channels
hub and the dashboard.

    .venv/bin/python scripts/console_screenshots.py [--out docs] [--lang en]
"""

from __future__ import annotations

import argparse
import base64
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import seed  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.sandbox.server import ServerThread, free_port  # noqa: E402
from gateway.sandbox.smtp_server import SmtpSandbox  # noqa: E402
from gateway.sandbox.twilio_api import TwilioSandbox  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACCOUNT_SID = "AC" + "5c" * 16
AUTH_TOKEN = "screenshots-twilio-token"
SMTP_USER, SMTP_PASSWORD = "accueil@cabinet-dupont.example", "smtp-app-password-2024"
HISTORY_ROWS = 4_000


@contextmanager
def running_gateway(scratch: Path) -> Iterator[tuple[str, str, int]]:
    """(gateway URL, admin key, SMTP port) of a gateway wired to the emulators."""
    with ExitStack() as stack:
        twilio = TwilioSandbox(ACCOUNT_SID, AUTH_TOKEN, callback_delay=0.01)
        twilio_url = stack.enter_context(ServerThread(twilio.app)).base_url
        smtp = stack.enter_context(
            SmtpSandbox(username=SMTP_USER, password=SMTP_PASSWORD, tls_mode="starttls")
        )
        port = free_port()
        admin = secrets.token_urlsafe(24)
        environ = {
            "ADMIN_API_KEY": admin,
            "ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "DATABASE_PATH": str(scratch / "gateway.sqlite3"),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": "+33939035761",
            "TWILIO_API_BASE": twilio_url,
            "VAPI_API_KEY": "screenshots-vapi-key",
            "SMTP_ALLOW_PRIVATE_HOSTS": "true",
            "SMTP_CA_FILE": str(smtp.cert_path),
            "LOG_LEVEL": "WARNING",
        }
        # a configuration file that does not exist: nothing of the checkout's settings leaks in
        settings = load_settings(scratch / "wrangler_like.toml", environ=environ)
        server = stack.enter_context(ServerThread(create_app(settings), port=port))
        yield server.base_url, admin, smtp.port


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise SystemExit(f"{response.request.method} {response.request.url}: {response.text}")
    return response.json()


def demo_tenant(http: httpx.Client, admin: str, smtp_port: int) -> tuple[str, str]:
    """The demo tenant's id and API key, with its channels set up as the tour does."""
    operator = {"Authorization": f"Bearer {admin}"}
    for name, slug in (("Boulangerie Martin", "boulangerie-martin"),
                       ("Agence Immo Lyon", "agence-immo-lyon")):  # fmt: skip
        _ok(http.post("/admin/tenants", json={"name": name, "slug": slug}, headers=operator))
    created = _ok(
        http.post(
            "/admin/tenants",
            json={"name": "Cabinet Dupont", "slug": "cabinet-dupont"},
            headers=operator,
        )
    )
    tenant_id, key = created["tenant"]["id"], created["api_key"]
    tenant = {"Authorization": f"Bearer {key}"}
    _ok(
        http.put(
            f"/admin/tenants/{tenant_id}/channels/phone/config",
            json={"vapi_assistant_id": "asst-cabinet-dupont", "vapi_phone_number_id": "pn-shared"},
            headers=operator,
        )
    )
    _ok(
        http.put(
            f"/admin/tenants/{tenant_id}/channels/sms/config",
            json={"price_per_segment": 0.07},
            headers=operator,
        )
    )
    _ok(
        http.put(
            "/api/channels/phone/config",
            json={"forwarding_numbers": ["+33145678901"], "fallback_number": "+33198765432"},
            headers=tenant,
        )
    )
    _ok(
        http.put(
            "/api/channels/sms/config",
            json={"templates": {"rappel": "Bonjour {name}, rappel de votre rendez-vous {time}."}},
            headers=tenant,
        )
    )
    _ok(
        http.post(
            "/api/channels/email/config",
            json={
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "starttls",
                "username": SMTP_USER,
                "password": SMTP_PASSWORD,
                "from_email": SMTP_USER,
                "from_name": "Cabinet Dupont",
            },
            headers=tenant,
        )
    )
    for channel in ("phone", "sms", "email"):
        _ok(http.post(f"/api/channels/{channel}/toggle", json={"enabled": True}, headers=tenant))
    return tenant_id, key


def shoot(url: str, key: str, out: Path, lang: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(
            base_url=url, viewport={"width": 1200, "height": 800}, locale=lang
        )
        # nothing but the gateway: the screenshots show what works offline
        context.route(
            "**/*",
            lambda route: route.continue_() if route.request.url.startswith(url) else route.abort(),
        )
        page = context.new_page()
        page.goto("/console/")
        page.locator("#api-key").fill(key)
        page.locator("form[action='/console/sign-in'] button").click()
        page.wait_for_url(re.compile(r"/console/$"))
        hub = out / "console-hub.png"
        page.set_viewport_size({"width": 1200, "height": 440})
        page.screenshot(path=str(hub), full_page=True)
        written.append(hub)
        answer = page.goto("/console/dashboard")
        if answer is not None and answer.status == 200:
            page.wait_for_load_state("networkidle")
            dashboard = out / "console-dashboard.png"
            # the period, the key figures, the delivery chart and the money by channel
            height = min(2200, page.evaluate("document.documentElement.scrollHeight"))
            page.screenshot(
                path=str(dashboard),
                full_page=True,
                clip={"x": 0, "y": 0, "width": 1200, "height": height},
            )
            written.append(dashboard)
        else:
            print("no dashboard page yet (GET /console/dashboard answered "
                  f"{answer.status if answer else 'nothing'}): only the hub was taken")  # fmt: skip
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--lang", default="en", help="the browser's language (en, fr)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-screenshots-") as folder:
        scratch = Path(folder)
        with running_gateway(scratch) as (url, admin, smtp_port):
            with httpx.Client(base_url=url, timeout=15) as http:
                tenant_id, key = demo_tenant(http, admin, smtp_port)
            seed.insert(scratch / "gateway.sqlite3", seed.plan([tenant_id]), HISTORY_ROWS)
            for path in shoot(url, key, args.out, args.lang):
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
