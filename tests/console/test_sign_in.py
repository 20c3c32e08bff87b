"""Signing in and out of the console in a browser: tenant key, admin key, wrong or revoked
key, the session cookie's flags, and the key never kept by the page."""

from __future__ import annotations

import re
from typing import Any

from tests.console.conftest import Console, sign_in


def test_wrong_key_is_refused_next_to_the_field(page: Any) -> None:
    page.goto("/console/")
    page.get_by_label("API key").fill("cgw_00000000_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    field_error = page.locator("#api-key-error")
    assert field_error.inner_text() == "invalid API key"
    assert page.get_by_label("API key").get_attribute("aria-invalid") == "true"
    assert page.url.endswith("/console/sign-in")
    assert page.get_by_role("link", name="Channels").count() == 0


def test_tenant_key_opens_its_console_and_sign_out_ends_it(page: Any, console: Console) -> None:
    _, key = console.tenant("Cabinet Dupont")
    sign_in(page, key)
    assert page.locator("h1").inner_text() == "Channels"
    assert "Cabinet Dupont" in page.locator("header").inner_text()
    for name in ("Channels", "Dashboard"):
        assert page.get_by_role("link", name=name, exact=True).count() == 1
    assert page.get_by_role("link", name="Tenants").count() == 0  # not the operator

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/sign-in"))
    assert "You are signed out." in page.content()
    page.goto("/console/channels/email")
    assert page.url.endswith("/console/sign-in")


def test_revoked_key_ends_the_session_at_the_next_page(page: Any, console: Console) -> None:
    tenant, _ = console.tenant()
    issued = console.http.post(
        f"/admin/tenants/{tenant['id']}/api-keys", json={"label": "browser"}, headers=console.admin
    ).json()
    sign_in(page, issued["key"])
    assert page.locator("h1").inner_text() == "Channels"
    revoked = console.http.delete(
        f"/admin/tenants/{tenant['id']}/api-keys/{issued['id']}", headers=console.admin
    )
    assert revoked.status_code == 204
    page.goto("/console/channels/sms")
    assert "/console/sign-in" in page.url
    assert "the API key was revoked" in page.locator("main").inner_text()
    # and the revoked key cannot sign in again
    page.get_by_label("API key").fill(issued["key"])
    page.get_by_role("button", name="Sign in").click()
    assert page.locator("#api-key-error").inner_text() == "invalid API key"


def test_session_cookie_flags_and_the_key_never_reaches_the_page(
    page: Any, console: Console
) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "cgw_console"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert cookie["secure"] is False  # PUBLIC_BASE_URL is http here; https sets Secure
    assert key not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    for path in ("/console/", "/console/channels/email", "/console/channels/whatsapp"):
        page.goto(path)
        assert key not in page.content()
        storage = page.evaluate(
            "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
        )
        assert key not in storage
        assert page.evaluate("localStorage.length") == 0


def test_admin_key_opens_the_operator_console(page: Any, console: Console) -> None:
    console.tenant("Boulangerie Martin")
    sign_in(page, console.admin["Authorization"].removeprefix("Bearer "))
    assert page.locator("h1").inner_text() == "Tenants"
    page.get_by_role("link", name="Boulangerie Martin").click()
    page.wait_for_url(re.compile(r"/console/$"))
    assert page.locator("h1").inner_text() == "Channels"
    header = page.locator("header").inner_text()
    assert "Operator" in header and "Boulangerie Martin" in header
    assert page.get_by_role("link", name="Tenants").count() == 1
