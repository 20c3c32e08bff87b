"""The operator's console (tenants, opening one, the operator-only fields) and the two
languages, in a browser."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.conftest import ADMIN_KEY
from tests.console.conftest import Console, htmx_click, sign_in


def _open_as_operator(page: Any, name: str) -> None:
    sign_in(page, ADMIN_KEY)
    page.get_by_role("link", name=name).click()
    page.wait_for_url(re.compile(r"/console/$"))


def test_operator_edits_operator_only_fields_of_a_tenant(page: Any, console: Console) -> None:
    tenant, key = console.tenant("Agence Immo Lyon")
    _open_as_operator(page, "Agence Immo Lyon")
    page.get_by_role("link", name="SMS").click()
    page.wait_for_url("**/console/channels/sms")
    operator = page.locator("#operator-form")
    operator.get_by_label("Price per segment (€)").fill("0.0925")
    operator.get_by_label("Sender").fill("AgenceImmo")
    htmx_click(page, page.get_by_role("button", name="Save operator settings"))
    expect(operator.get_by_text("Saved.")).to_be_visible()
    sms = console.get("/api/channels/sms/config", key)
    assert sms["operator_settings"]["price_per_segment"] == 0.0925
    assert sms["operator_settings"]["sender"] == "AgenceImmo"

    page.get_by_role("link", name="Channels", exact=True).click()
    page.get_by_role("link", name="Phone").click()
    page.wait_for_url("**/console/channels/phone")
    operator = page.locator("#operator-form")
    operator.get_by_label("Vapi assistant ID").fill("asst-0042")
    operator.get_by_label("Vapi phone number ID").fill("pn-shared")
    operator.get_by_label("Dedicated numbers").fill("04 72 00 00 01")
    operator.get_by_label("Price per minute (€)").fill("0.2")
    htmx_click(page, page.get_by_role("button", name="Save operator settings"))
    expect(operator.get_by_text("Saved.")).to_be_visible()
    admin = console.http.get(f"/admin/tenants/{tenant['id']}", headers=console.admin).json()
    assert admin["tenant"]["id"] == tenant["id"]
    phone = console.get("/api/channels/phone/config", key)["operator_settings"]
    assert phone["vapi_assistant_id"] == "asst-0042"
    assert phone["dedicated_numbers"] == ["+33472000001"]  # read in the tenant's country
    assert phone["price_per_minute"] == 0.2
    # the state panel follows: only VAPI_API_KEY (the gateway's) is missing now
    expect(page.locator("#channel-status .missing li")).to_have_text(
        ["VAPI_API_KEY (set by the operator)"]
    )

    # the API's own message next to the operator field it refuses
    operator.get_by_label("Vapi SIP URI").fill("not-a-sip-uri")
    htmx_click(page, page.get_by_role("button", name="Save operator settings"))
    expect(page.locator("#op-f-vapi-sip-uri-error")).to_contain_text("String should match")
    assert (
        console.get("/api/channels/phone/config", key)["operator_settings"]["vapi_sip_uri"] is None
    )


def test_tenant_sees_no_operator_fields(page: Any, console: Console) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    for channel in ("phone", "sms"):
        page.goto(f"/console/channels/{channel}")
        expect(page.locator("#operator-form")).to_have_count(0)
        expect(page.get_by_label("Vapi assistant ID")).to_have_count(0)


def test_french_switch_translates_every_page_and_sticks(page: Any, console: Console) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    page.get_by_role("link", name="Français").click()
    page.wait_for_url(re.compile(r"/console/$"))
    expect(page.locator("h1")).to_have_text("Canaux")
    assert page.locator("html").get_attribute("lang") == "fr"
    for name in ("Téléphone", "SMS", "E-mail", "WhatsApp"):
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(1)
    page.get_by_role("link", name="E-mail", exact=True).click()
    page.wait_for_url("**/console/channels/email")
    for label in ("Hôte", "Port", "Sécurité", "Nom d'utilisateur", "Mot de passe"):
        expect(page.get_by_label(label, exact=True)).to_have_count(1)
    expect(page.get_by_role("button", name="Enregistrer")).to_be_visible()
    htmx_click(page, page.get_by_role("button", name="Activer"))
    expect(page.locator("#channel-status")).to_contain_text("Ce qui manque")
    page.goto("/console/channels/phone")
    expect(page.get_by_role("heading", name="Renvoyer vos appels")).to_be_visible()
    expect(page.get_by_label("Lundi")).to_have_value("09:00-12:00, 14:00-18:00")
    # and back
    page.get_by_role("link", name="English").click()
    page.wait_for_url("**/console/channels/phone")
    expect(page.locator("h1")).to_have_text("Phone")


def test_browser_language_french_by_default(new_page: Callable[..., Any]) -> None:
    page = new_page(locale="fr-FR")
    page.goto("/console/")
    expect(page.locator("h1")).to_have_text("Connexion")
    page.get_by_label("Clé d'API").fill("wrong")
    page.get_by_role("button", name="Se connecter").click()
    expect(page.locator("#api-key-error")).to_have_text("clé d'API invalide")


def test_operator_issues_a_scoped_key_in_the_browser(page: Any, console: Console) -> None:
    _, tenant_key = console.tenant("Garage Martin")
    _open_as_operator(page, "Garage Martin")
    page.get_by_role("link", name="API keys").click()
    page.wait_for_url("**/console/keys")
    page.get_by_label("Label").fill("reporting")
    page.get_by_label("config").uncheck()
    page.get_by_label("send").uncheck()
    page.get_by_role("button", name="Issue the key").click()
    new_key = page.get_by_label("New API key").input_value()
    assert new_key.startswith("cgw_")
    expect(page.locator("#keys tr", has_text="reporting")).to_contain_text("read")
    bearer = {"Authorization": f"Bearer {new_key}"}
    assert console.http.get("/api/messages", headers=bearer).status_code == 200
    refused = console.http.put("/api/channels/sms/config", json={}, headers=bearer)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"]["scope"] == "config"
    # no scope ticked: the API's refusal next to the scopes, nothing issued
    page.get_by_label("Label").fill("none")
    for scope in ("read", "send", "config"):
        page.get_by_label(scope, exact=True).uncheck()
    page.get_by_role("button", name="Issue the key").click()
    expect(page.locator("#key-scopes-error")).to_be_visible()
    expect(page.locator("#keys tr", has_text="none")).to_have_count(0)
    page.get_by_role("button", name="Revoke the key reporting").click()
    expect(page.locator("#keys tr", has_text="reporting")).to_contain_text("revoked on")
    assert console.http.get("/api/messages", headers=bearer).status_code == 401
    assert console.get("/api/messages", tenant_key) is not None
