"""The console over plain HTTP (the app in-process): CSRF, the cookie, redirects, error pages,
the SMS preview's figures, and that every form covers exactly what the API allows."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.channel_models import SPECS
from gateway.config import Settings
from gateway.console import channel_forms
from gateway.console.i18n import from_accept_language
from gateway.console.signin import safe_next
from tests.conftest import ADMIN_KEY, TWILIO, Api, running_api

CONSOLE = Path(__file__).resolve().parents[2] / "gateway" / "console"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


async def _signed_in(api: Api, key: str) -> str:
    """Sign the client in with `key`; the page's CSRF token."""
    page = await api.client.get("/console/sign-in")
    signed = await api.client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": _csrf(page.text)}
    )
    assert signed.status_code == 303, signed.text
    hub = await api.client.get(signed.headers["location"])
    assert hub.status_code == 200
    return _csrf(hub.text)


async def _tenant_key(api: Api, slug: str = "acme") -> tuple[dict[str, Any], str]:
    tenant, headers = await api.create_tenant(slug)
    return tenant, headers["Authorization"].removeprefix("Bearer ")


async def test_root_and_console_lead_to_the_sign_in_page(api: Api) -> None:
    root = await api.client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/console/"
    hub = await api.client.get("/console/")
    assert hub.status_code == 303 and hub.headers["location"] == "/console/sign-in"
    page = await api.client.get("/console/sign-in")
    assert page.status_code == 200
    assert '<label for="api-key">API key</label>' in page.text
    assert page.headers["content-type"].startswith("text/html")


async def test_session_cookie_is_httponly_strict_secure_on_https(api: Api) -> None:
    _, key = await _tenant_key(api)
    page = await api.client.get("/console/sign-in")
    signed = await api.client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": _csrf(page.text)}
    )
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("cgw_console=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "path=/console", "samesite=strict"} <= flags
    assert key not in cookie


async def test_post_without_csrf_token_is_refused(api: Api) -> None:
    _, key = await _tenant_key(api)
    # no session at all: even the sign-in form needs the token its page gave
    bare = httpx.AsyncClient(transport=api.client._transport, base_url="https://gateway.test")
    async with bare:
        refused = await bare.post("/console/sign-in", data={"api_key": key})
    assert refused.status_code == 403
    assert "CSRF" in refused.text and "set-cookie" not in refused.headers

    token = await _signed_in(api, key)
    for path, data in (
        ("/console/channels/email", {"host": "smtp.example.com"}),
        ("/console/channels/email/toggle", {"enabled": "true"}),
        ("/console/sign-out", {}),
    ):
        without = await api.client.post(path, data=data)
        assert without.status_code == 403, path
        wrong = await api.client.post(path, data={**data, "csrf_token": token[::-1]})
        assert wrong.status_code == 403, path
    # nothing was changed, and the session still works
    config = await api.client.get(
        "/api/channels/email/config", headers={"Authorization": f"Bearer {key}"}
    )
    assert config.json()["settings"]["host"] is None
    assert (await api.client.get("/console/channels/email")).status_code == 200
    # the htmx header is accepted as well as the form field
    saved = await api.client.post(
        "/console/channels/email",
        data={"host": "smtp.example.com", "security": "starttls"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert saved.status_code == 200, saved.text
    assert "Saved." in saved.text


async def test_wrong_key_answers_401_page_and_admin_key_the_tenants(api: Api) -> None:
    page = await api.client.get("/console/sign-in")
    wrong = await api.client.post(
        "/console/sign-in", data={"api_key": "cgw_nope", "csrf_token": _csrf(page.text)}
    )
    assert wrong.status_code == 401
    assert "invalid API key" in wrong.text
    await api.create_tenant("boulangerie", "Boulangerie Martin")
    await _signed_in(api, ADMIN_KEY)
    tenants = await api.client.get("/console/tenants")
    assert tenants.status_code == 200
    assert "Boulangerie Martin" in tenants.text


async def test_a_key_scoped_to_less_than_everything_cannot_sign_in(api: Api) -> None:
    """The console reads, sends tests and edits settings: a read-only key signing in would
    do there what the API refuses it."""
    tenant, _ = await api.create_tenant("cabinet")
    issued = await api.client.post(
        f"/admin/tenants/{tenant['id']}/api-keys", json={"scopes": ["read"]}, headers=api.admin
    )
    assert issued.status_code == 201, issued.text
    page = await api.client.get("/console/sign-in")
    refused = await api.client.post(
        "/console/sign-in",
        data={"api_key": issued.json()["key"], "csrf_token": _csrf(page.text)},
    )
    assert refused.status_code == 403
    assert "the console needs a key with every scope" in refused.text
    assert (await api.client.get("/console/")).status_code == 303  # still signed out


async def test_tenant_cannot_reach_operator_pages_or_fields(api: Api) -> None:
    tenant, key = await _tenant_key(api)
    token = await _signed_in(api, key)
    tenants = await api.client.get("/console/tenants")
    assert tenants.status_code == 303 and tenants.headers["location"] == "/console/"
    other, _ = await api.create_tenant("other")
    opened = await api.client.get(f"/console/tenants/{other['id']}")
    assert opened.status_code == 303 and opened.headers["location"] == "/console/"
    refused = await api.client.post(
        "/console/channels/sms/operator",
        data={"price_per_segment": "0.01", "csrf_token": token},
    )
    assert refused.status_code == 403
    operator = await api.client.get(
        f"/admin/tenants/{tenant['id']}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert operator.status_code == 200
    page = await api.client.get("/console/channels/sms")
    assert "Operator settings" not in page.text
    assert "price_per_segment" not in page.text


async def test_unknown_channel_is_the_apis_404_as_a_page(api: Api) -> None:
    _, key = await _tenant_key(api)
    await _signed_in(api, key)
    page = await api.client.get("/console/channels/fax")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Unknown channel &#39;fax&#39;; expected one of phone, sms, email, whatsapp" in page.text
    missing = await api.client.get("/console/no-such-page")
    assert missing.status_code == 404 and "This page does not exist." in missing.text


async def test_security_headers_on_console_pages(api: Api) -> None:
    page = await api.client.get("/console/sign-in")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    script = await api.client.get("/console/static/vendor/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text


@pytest.fixture
async def sms_api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    """The app with the operator's Twilio account: SMS can be accepted (not sent)."""
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("Bonjour Léa, à demain 10h.", "GSM-7", 1),
        ("x" * 161, "GSM-7", 2),
        ("Prix: 10€ {}" + "y" * 148, "GSM-7", 2),  # € { } count twice: 162 septets
        ("Rendez-vous confirmé ✅", "UCS-2", 1),
        ("😀" * 36, "UCS-2", 2),  # beyond the BMP: 72 UTF-16 units
    ],
)
async def test_sms_preview_counts_and_bills_like_the_send_endpoint(
    sms_api: Api, text: str, encoding: str, segments: int
) -> None:
    api = sms_api
    _, key = await _tenant_key(api)
    bearer = {"Authorization": f"Bearer {key}"}
    token = await _signed_in(api, key)
    answer = await api.client.post(
        "/console/channels/sms/preview",
        data={"text": text},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert answer.status_code == 200
    # what the send endpoint counts and bills for the same text
    toggled = await api.client.post(
        "/api/channels/sms/toggle", json={"enabled": True}, headers=bearer
    )
    assert toggled.status_code == 200, toggled.text
    sent = await api.client.post(
        "/api/channels/sms/send", json={"to": "+33612345678", "body": text}, headers=bearer
    )
    assert sent.status_code == 202, sent.text
    accepted = sent.json()
    assert (accepted["encoding"], accepted["num_segments"]) == (encoding, segments)
    assert f"<strong>{accepted['encoding']}</strong>" in answer.text
    assert f"{accepted['num_segments']} segment(s)" in answer.text
    assert f"billed €{accepted['billed_cost']:.4f}" in answer.text


async def test_sms_preview_uses_the_tenants_price_in_french(api: Api) -> None:
    tenant, key = await _tenant_key(api)
    priced = await api.client.put(
        f"/admin/tenants/{tenant['id']}/channels/sms/config",
        json={"price_per_segment": 0.0825},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert priced.status_code == 200
    token = await _signed_in(api, key)
    answer = await api.client.post(
        "/console/channels/sms/preview",
        data={"text": "z" * 200},
        headers={"X-CSRF-Token": token, "HX-Request": "true", "Accept-Language": "fr-FR,fr"},
    )
    assert "2 segment(s)" in answer.text
    assert "facturé 0,1650\u00a0€ (0,0825\u00a0€ par segment)" in answer.text


def test_each_form_has_exactly_the_fields_the_api_allows() -> None:
    """A field added to a channel model without its input fails here."""

    def leaves(model: Any, prefix: str = "") -> set[str]:
        names: set[str] = set()
        for name, info in model.model_fields.items():
            nested = info.annotation
            if hasattr(nested, "model_fields"):
                names |= leaves(nested, f"{prefix}{name}.")
            else:
                names.add(prefix + name)
        return names

    for channel, spec in SPECS.items():
        inputs = {i.name for i in channel_forms.TENANT_INPUTS[channel]}
        expected = leaves(spec.tenant_model)
        if "booking.opening_hours" in expected:  # one input per weekday
            expected.remove("booking.opening_hours")
            expected |= {f"booking.opening_hours.{day}" for day in channel_forms.WEEKDAYS}
        if "templates" in expected:  # rows, not one input
            expected.remove("templates")
            assert channel in channel_forms.ROW_FIELDS
        assert inputs == expected, channel
        operator = {i.name for i in channel_forms.OPERATOR_INPUTS.get(channel, ())}
        assert operator == set(spec.operator_fields), channel
        secrets = {i.name for i in channel_forms.TENANT_INPUTS[channel] if i.kind == "secret"}
        assert secrets == set(spec.secret_fields), channel


def test_english_and_french_hold_the_same_keys_and_every_key_used() -> None:
    en = json.loads((CONSOLE / "i18n" / "en.json").read_text(encoding="utf-8"))
    fr = json.loads((CONSOLE / "i18n" / "fr.json").read_text(encoding="utf-8"))
    assert set(en) == set(fr)
    assert all(fr[key].strip() for key in fr)
    used: set[str] = set()
    for template in (CONSOLE / "templates").rglob("*.html"):
        text = template.read_text(encoding="utf-8")
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_.]*[a-z0-9])["']""", text))
    for module in CONSOLE.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        used |= set(re.findall(r'"((?:signin|email|error)\.[a-z_]*[a-z])"', text))
    used.discard("error.html")  # a template's name, not a key
    # the keys templates build from a prefix and a value
    for channel in SPECS:
        used |= {f"channel.{channel}", f"page.{channel}.intro", f"test.hint_{channel}"}
        used.add(f"hub.about.{channel}")
    outcomes = ("ok", "transient", "permanent", "configuration", "unknown")
    used |= {f"test.outcome.{outcome}" for outcome in outcomes}
    used |= {f"whatsapp.template_{column}" for column in channel_forms.ROW_FIELDS["whatsapp"]}
    inputs = [*channel_forms.TENANT_INPUTS.values(), *channel_forms.OPERATOR_INPUTS.values()]
    used |= {f"choice.{choice}" for group in inputs for i in group for choice in i.choices}
    used |= {"operator.status_active", "operator.status_suspended"}
    assert used - set(en) == set()
    labels = {f"field.{i.name}" for inputs in channel_forms.TENANT_INPUTS.values() for i in inputs}
    labels |= {
        f"field.{i.name}" for inputs in channel_forms.OPERATOR_INPUTS.values() for i in inputs
    }
    assert labels - set(en) == set()


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        ("en-GB,fr;q=0.5", "en"),
        ("de-DE,fr;q=0.4", "fr"),
        ("de-DE", None),
        ("fr;q=0, en;q=0.1", "en"),
        ("", None),
    ],
)
def test_accept_language(header: str, lang: str | None) -> None:
    assert from_accept_language(header) == lang


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("/console/channels/email", "/console/channels/email"),
        ("https://evil.example/console", "/console/"),
        ("//evil.example", "/console/"),
        ("/console//evil.example", "/console/"),
        ("/console/\\evil", "/console/"),
        (None, "/console/"),
    ],
)
def test_language_switch_returns_only_to_console_pages(value: str | None, safe: str) -> None:
    assert safe_next(value) == safe


async def test_forms_work_without_javascript(api: Api) -> None:
    """A plain form post (no htmx) gets the whole page back, with the same status."""
    _, key = await _tenant_key(api)
    token = await _signed_in(api, key)
    refused = await api.client.post(
        "/console/channels/email", data={"port": "0", "csrf_token": token}
    )
    assert refused.status_code == 422
    assert "<h1>Email</h1>" in refused.text and 'id="f-port-error"' in refused.text
    saved = await api.client.post(
        "/console/channels/email",
        data={"host": "smtp.example.com", "from_email": "a@example.com", "csrf_token": token},
    )
    assert saved.status_code == 200
    assert "<h1>Email</h1>" in saved.text and "Saved." in saved.text
    toggled = await api.client.post(
        "/console/channels/email/toggle", data={"enabled": "true", "csrf_token": token}
    )
    assert toggled.status_code == 200 and "Disable" in toggled.text
    config = await api.client.get(
        "/api/channels/email/config", headers={"Authorization": f"Bearer {key}"}
    )
    assert config.json()["enabled"] is True
    assert config.json()["settings"]["host"] == "smtp.example.com"


async def test_changing_the_admin_key_ends_every_session(
    api: Api, make_settings: Callable[..., Settings]
) -> None:
    _, key = await _tenant_key(api)
    await _signed_in(api, key)
    cookie = api.client.cookies.get("cgw_console", domain="gateway.test", path="/console")
    assert cookie
    async with running_api(make_settings(ADMIN_API_KEY="another-admin-key-0123456789")) as other:
        other.client.cookies.set("cgw_console", cookie, domain="gateway.test", path="/console")
        hub = await other.client.get("/console/")
    assert hub.status_code == 303 and hub.headers["location"] == "/console/sign-in"
