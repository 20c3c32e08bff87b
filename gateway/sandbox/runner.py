"""`gateway sandbox`: every provider emulator in one process, for local development (in the
spirit of stripe-mock or LocalStack).

It prints one block of settings, in `.dev.vars` syntax, that points a gateway at the emulators
and can be appended to `.dev.vars` as it is (`gateway sandbox --print-settings >> .dev.vars`).
Everything in the block is stable from one run to the next: the credentials are the ones the
gateway is configured with (or fixed sandbox values), the ports follow `--base-port`, and the
SMTP server's certificate is kept under the project's `.state/sandbox/` and reused.

WhatsApp webhooks need to know which tenant a number belongs to: each `--whatsapp
PHONE_NUMBER_ID=TENANT_SLUG` sends that number's status and inbound webhooks to
`{gateway_url}/webhooks/whatsapp/{slug}`, signed with the sandbox app secret (Meta) or carrying
`X-Webhook-Secret: <WHATSAPP_VERIFY_TOKEN>` (360dialog, for the number of the sandbox key).

Telnyx signs its webhooks with an Ed25519 key fixed for the sandbox (TELNYX_PUBLIC_KEY in the
block); messages report to the `webhook_url` they were sent with, and inbound messages
(`POST /_sandbox/inbound` on the Telnyx emulator) go to `{gateway_url}/webhooks/telnyx/events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.sandbox import ecb_feed
from gateway.sandbox.smtp_server import SmtpSandbox, ensure_certificate
from gateway.sandbox.telnyx_api import TelnyxSandbox
from gateway.sandbox.telnyx_webhooks import public_key_b64
from gateway.sandbox.twilio_api import TwilioSandbox
from gateway.sandbox.vapi_api import VapiSandbox
from gateway.sandbox.whatsapp_api import D360Channel, MetaAccount, WhatsAppSandbox

# Fixed credentials of the emulated accounts, used unless the gateway already has its own.
ACCOUNT_SID = "AC" + hashlib.sha256(b"channel-gateway sandbox").hexdigest()[:32]
AUTH_TOKEN = "sandbox-twilio-auth-token"
PHONE_NUMBER = "+33939035761"
VAPI_API_KEY = "sandbox-vapi-key"
VAPI_WEBHOOK_SECRET = "sandbox-vapi-webhook-secret"
VAPI_PHONE_NUMBER_ID = "pn-sandbox-shared-line"
META_TOKEN = "sandbox-meta-token"
META_APP_SECRET = "sandbox-app-secret"
D360_API_KEY = "sandbox-d360-key"
D360_PHONE_NUMBER_ID = "106540352242922"
WHATSAPP_VERIFY_TOKEN = "sandbox-verify-token"
SMTP_USERNAME = "sandbox"
SMTP_PASSWORD = "sandbox-smtp-pass"
TELNYX_API_KEY = "sandbox-telnyx-key"
TELNYX_PHONE_NUMBER = "+33939035762"
CALLBACK_DELAY = 0.5


def telnyx_signing_key() -> Ed25519PrivateKey:
    """The emulated Telnyx account's webhook signing key: fixed, so its public key is too."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"channel-gateway sandbox telnyx").digest()
    )


@dataclass(frozen=True)
class SandboxConfig:
    """Where the emulators listen, the accounts they emulate, and where their callbacks go."""

    host: str
    base_port: int
    gateway_url: str
    state_dir: Path
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    phone_number: str = PHONE_NUMBER
    vapi_api_key: str = VAPI_API_KEY
    vapi_webhook_secret: str = VAPI_WEBHOOK_SECRET
    whatsapp_numbers: Mapping[str, str] = field(default_factory=dict)
    telnyx_api_key: str = TELNYX_API_KEY
    telnyx_phone_number: str = TELNYX_PHONE_NUMBER

    @property
    def ports(self) -> dict[str, int]:
        base = self.base_port
        return {
            "twilio": base,
            "whatsapp": base + 1,
            "vapi": base + 2,
            "smtp": base + 3,
            "telnyx": base + 4,
        }

    @property
    def cert_dir(self) -> Path:
        return self.state_dir / "sandbox" / "smtp"

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.ports[name]}"

    def webhook_url(self, slug: str) -> str:
        return f"{self.gateway_url.rstrip('/')}/webhooks/whatsapp/{slug}"


def parse_whatsapp_numbers(items: list[str]) -> dict[str, str]:
    """`PHONE_NUMBER_ID=TENANT_SLUG` items into a mapping; ValueError names a bad one."""
    numbers: dict[str, str] = {}
    for item in items:
        number_id, sep, slug = item.partition("=")
        if not sep or not number_id.strip() or not slug.strip():
            raise ValueError(f"--whatsapp expects PHONE_NUMBER_ID=TENANT_SLUG, got {item!r}")
        numbers[number_id.strip()] = slug.strip()
    return numbers


def settings_block(config: SandboxConfig) -> str:
    """The `.dev.vars` lines that point a gateway at the emulators; also writes the SMTP
    certificate they name, so a gateway started before the sandbox finds it."""
    ca_file = ensure_certificate(config.cert_dir, config.host).resolve()
    ports = config.ports
    lines = [
        "# gateway sandbox: the provider emulators (append to .dev.vars, restart the gateway)",
        f"TWILIO_API_BASE={config.url('twilio')}",
        f"TWILIO_ACCOUNT_SID={config.account_sid}",
        f"TWILIO_AUTH_TOKEN={config.auth_token}",
        f"TWILIO_PHONE_NUMBER={config.phone_number}",
        f"VAPI_API_BASE={config.url('vapi')}",
        f"VAPI_API_KEY={config.vapi_api_key}",
        f"VAPI_WEBHOOK_SECRET={config.vapi_webhook_secret}",
        f"TELNYX_API_BASE={config.url('telnyx')}",
        f"TELNYX_API_KEY={config.telnyx_api_key}",
        f"TELNYX_PUBLIC_KEY={public_key_b64(telnyx_signing_key())}",
        f"TELNYX_PHONE_NUMBER={config.telnyx_phone_number}",
        f"WHATSAPP_GRAPH_BASE={config.url('whatsapp')}",
        f"D360_API_BASE={config.url('whatsapp')}",
        f"SMTP_CA_FILE={ca_file}",
        # the ECB's daily euro reference rates, served by the Vapi emulator's port
        f"EXCHANGE_RATE_URL={config.url('vapi')}{ecb_feed.FEED_PATH}",
        # The emulated SMTP server is on loopback, on a port no relay uses.
        "SMTP_ALLOW_PRIVATE_HOSTS=true",
        f"# Vapi: any phone number id works; the shared line's is {VAPI_PHONE_NUMBER_ID}",
        f"# WhatsApp (Meta): access_token {META_TOKEN}, app_secret {META_APP_SECRET}; "
        f"360dialog: api_key {D360_API_KEY} (number {D360_PHONE_NUMBER_ID}); "
        f"verify_token {WHATSAPP_VERIFY_TOKEN}",
        f"# SMTP: host {config.host}, port {ports['smtp']}, security starttls, "
        f"username {SMTP_USERNAME}, password {SMTP_PASSWORD}",
    ]
    for number_id, slug in sorted(config.whatsapp_numbers.items()):
        lines.append(f"# WhatsApp webhooks of number {number_id} go to {config.webhook_url(slug)}")
    return "\n".join(lines)


def whatsapp_sandbox(config: SandboxConfig, callback_delay: float) -> WhatsAppSandbox:
    """The WhatsApp emulator with each mapped number's webhooks going to its tenant's URL."""
    sandbox = WhatsAppSandbox(META_TOKEN, D360_API_KEY, META_APP_SECRET, callback_delay)
    for number_id, slug in config.whatsapp_numbers.items():
        url = config.webhook_url(slug)
        sandbox.add_account(number_id, MetaAccount(META_TOKEN, META_APP_SECRET, url))
        if number_id == D360_PHONE_NUMBER_ID:
            headers = {"X-Webhook-Secret": WHATSAPP_VERIFY_TOKEN}
            sandbox.add_d360_channel(D360Channel(D360_API_KEY, number_id, url, headers))
    return sandbox


def _server(app: object, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)  # type: ignore[arg-type]
    return uvicorn.Server(config)


async def serve(config: SandboxConfig, callback_delay: float = CALLBACK_DELAY) -> None:
    """Run every emulator until cancelled, after printing the settings block."""
    twilio = TwilioSandbox(config.account_sid, config.auth_token, callback_delay=callback_delay)
    whatsapp = whatsapp_sandbox(config, callback_delay)
    vapi = VapiSandbox(config.vapi_api_key)
    telnyx = TelnyxSandbox(
        config.telnyx_api_key,
        telnyx_signing_key(),
        callback_delay,
        phone_number=config.telnyx_phone_number,
        # inbound messages go to the gateway's Telnyx webhook, as a messaging profile's do
        profile_webhook_url=f"{config.gateway_url.rstrip('/')}/webhooks/telnyx/events",
    )
    ports = config.ports
    block = settings_block(config)
    smtp = SmtpSandbox(
        host=config.host,
        port=ports["smtp"],
        username=SMTP_USERNAME,
        password=SMTP_PASSWORD,
        cert_dir=config.cert_dir,
    )
    with smtp:
        print(block, flush=True)
        print(
            f"\n# running: Twilio {config.url('twilio')}, WhatsApp {config.url('whatsapp')}, "
            f"Vapi {config.url('vapi')}, SMTP {config.host}:{ports['smtp']}, "
            f"Telnyx {config.url('telnyx')} (Ctrl-C stops)",
            flush=True,
        )
        servers = [
            _server(app, config.host, ports[name])
            for name, app in (
                ("twilio", twilio.app),
                ("whatsapp", whatsapp.app),
                ("vapi", ecb_feed.with_feed(vapi.app)),
                ("telnyx", telnyx.app),
            )
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*(server.serve() for server in servers))
