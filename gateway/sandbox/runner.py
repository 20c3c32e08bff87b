"""`gateway sandbox`: every provider emulator in one process, for local development (in the
spirit of stripe-mock or LocalStack). Prints the settings that point a gateway at them."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import uvicorn

from gateway.sandbox.smtp_server import SmtpSandbox
from gateway.sandbox.twilio_api import TwilioSandbox
from gateway.sandbox.vapi_api import VapiSandbox
from gateway.sandbox.whatsapp_api import WhatsAppSandbox


def _server(app: object, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)  # type: ignore[arg-type]
    return uvicorn.Server(config)


async def serve(
    host: str,
    base_port: int,
    gateway_url: str,
    account_sid: str | None = None,
    auth_token: str | None = None,
) -> None:
    account_sid = account_sid or "AC" + secrets.token_hex(16)
    auth_token = auth_token or secrets.token_hex(16)
    twilio = TwilioSandbox(account_sid, auth_token, callback_delay=0.5)
    whatsapp = WhatsAppSandbox(
        "sandbox-meta-token", "sandbox-d360-key", "sandbox-app-secret", callback_delay=0.5
    )
    vapi = VapiSandbox("sandbox-vapi-key")
    ports = {"twilio": base_port, "whatsapp": base_port + 1, "vapi": base_port + 2}
    smtp_port = base_port + 3
    lines = [
        f"TWILIO_API_BASE=http://{host}:{ports['twilio']}",
        f"TWILIO_ACCOUNT_SID={account_sid}",
        f"TWILIO_AUTH_TOKEN={auth_token}",
        f"WHATSAPP_GRAPH_BASE=http://{host}:{ports['whatsapp']}",
        f"D360_API_BASE=http://{host}:{ports['whatsapp']}",
        f"VAPI_API_BASE=http://{host}:{ports['vapi']}",
        "VAPI_API_KEY=sandbox-vapi-key",
    ]
    with SmtpSandbox(host=host, port=smtp_port, username="user", password="pass") as smtp:
        lines.append(f"SMTP_CA_FILE={smtp.cert_path}")
        print("Provider emulators are running. Point the gateway at them with:\n")
        print("\n".join(lines))
        print(
            f"\nWhatsApp: Meta token 'sandbox-meta-token', app secret 'sandbox-app-secret', "
            f"360dialog key 'sandbox-d360-key'; webhooks go to {gateway_url}/webhooks/whatsapp/"
            "<tenant slug> (set with POST /_sandbox/config on the WhatsApp port)."
            f"\nSMTP: host {host}, port {smtp_port}, STARTTLS, user 'user', password 'pass'.",
            flush=True,
        )
        servers = [
            _server(app, host, ports[name])
            for name, app in (
                ("twilio", twilio.app),
                ("whatsapp", whatsapp.app),
                ("vapi", vapi.app),
            )
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*(server.serve() for server in servers))
