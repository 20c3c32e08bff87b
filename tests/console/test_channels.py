"""The channel pages in a browser: each channel edited and saved (then the JSON API shows the
change), the API's field errors next to their field, the switch, the test button."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from gateway.sandbox.smtp_server import SmtpSandbox
from tests.console.conftest import SMTP_PASSWORD, SMTP_USER, Console, htmx_click, sign_in
from tests.stack import SHARED_NUMBER


def _settings(console: Console, key: str, channel: str) -> Any:
    return console.get(f"/api/channels/{channel}/config", key)


def test_hub_shows_each_channel_state_and_what_is_missing(page: Any, console: Console) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    api = {c["channel"]: c for c in console.get("/api/channels", key)["channels"]}
    for channel, name in (("phone", "Phone"), ("sms", "SMS"), ("email", "Email")):
        card = page.locator(".channels > li").filter(has=page.get_by_role("link", name=name))
        expected = "Configured" if api[channel]["configured"] else "Incomplete"
        expect(card).to_contain_text(expected)
        expect(card).to_contain_text("Off")
    email = page.locator(".channels > li").filter(has=page.get_by_role("link", name="Email"))
    assert api["email"]["missing"] == ["host", "from_email"]
    expect(email.locator(".missing li")).to_have_text(["Host", "From email"])
    page.get_by_role("link", name="WhatsApp").click()
    expect(page.locator("h1")).to_have_text("WhatsApp")


def test_email_preset_save_toggle_and_test(page: Any, console: Console, smtp: SmtpSandbox) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    page.get_by_role("link", name="Email").click()
    page.wait_for_url("**/console/channels/email")  # loaded: the presets' script runs
    page.get_by_role("button", name="SendGrid").click()
    assert page.get_by_label("Host").input_value() == "smtp.sendgrid.net"
    assert page.get_by_label("Username").input_value() == "apikey"
    expect(page.get_by_role("status").filter(has_text="apikey")).to_be_visible()
    page.get_by_role("button", name="Gmail").click()
    assert page.get_by_label("Host").input_value() == "smtp.gmail.com"
    assert page.get_by_label("Port").input_value() == "587"
    assert page.get_by_label("Security").input_value() == "starttls"
    expect(page.get_by_text("app password", exact=False).first).to_be_visible()

    # now the loopback SMTP server of the test
    page.get_by_label("Host").fill("localhost")
    page.get_by_label("Port").fill(str(smtp.port))
    page.get_by_label("Username").fill(SMTP_USER)
    page.get_by_label("Password", exact=True).fill(SMTP_PASSWORD)
    page.get_by_label("From email").fill(SMTP_USER)
    page.get_by_label("From name").fill("Sara")
    page.get_by_label("Reply to").fill("contact@acme.example")
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.get_by_text("Saved.")).to_be_visible()
    saved = _settings(console, key, "email")
    assert saved["settings"]["host"] == "localhost"
    assert saved["settings"]["port"] == smtp.port
    assert saved["settings"]["from_name"] == "Sara"
    assert saved["secrets"]["password"] == {"set": True, "last4": "0001"}
    # masked as the API masks it, and never written back into the page
    expect(page.locator("#f-password-state")).to_contain_text("set · …0001")
    assert page.get_by_label("Password", exact=True).input_value() == ""
    assert SMTP_PASSWORD not in page.content()
    expect(page.locator("#channel-status")).to_contain_text("Configured")

    # a blank password keeps the stored one
    page.get_by_label("From name").fill("Sara Martin")
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.get_by_text("Saved.")).to_be_visible()
    again = _settings(console, key, "email")
    assert again["settings"]["from_name"] == "Sara Martin"
    assert again["secrets"]["password"] == {"set": True, "last4": "0001"}

    htmx_click(page, page.get_by_role("button", name="Enable"))
    expect(page.locator("#channel-status")).to_contain_text("On")
    assert _settings(console, key, "email")["enabled"] is True

    page.get_by_label("Send the test to (email address)").fill("client@example.org")
    htmx_click(page, page.get_by_role("button", name="Run the test"))
    expect(page.locator("#channel-test")).to_contain_text("Test passed")
    assert [m.message["To"] for m in smtp.messages] == ["client@example.org"]
    expect(page.locator("#channel-test")).to_contain_text(
        str(smtp.messages[0].message["Message-ID"])
    )


def test_field_error_is_shown_next_to_its_field_and_nothing_is_saved(
    page: Any, console: Console
) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    page.goto("/console/channels/email")
    page.get_by_label("Host").fill("smtp.example.com")
    page.get_by_label("Port").fill("99999")
    page.get_by_label("From email").fill("not an address")
    htmx_click(page, page.get_by_role("button", name="Save"))
    port_error = page.locator("#f-port-error")
    expect(port_error).to_have_text("Input should be less than or equal to 65535")
    expect(page.get_by_label("Port")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-from-email-error")).to_be_visible()
    expect(page.locator("#f-host-error")).to_have_count(0)
    # the typed values stay in the form, and the API still has nothing
    assert page.get_by_label("Host").input_value() == "smtp.example.com"
    assert _settings(console, key, "email")["settings"]["host"] is None


def test_enabling_an_incomplete_channel_shows_what_is_missing(page: Any, console: Console) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    page.goto("/console/channels/whatsapp")
    htmx_click(page, page.get_by_role("button", name="Enable"))
    status = page.locator("#channel-status [role=alert]")
    expect(status).to_contain_text(
        "The whatsapp channel cannot be enabled until these are set: "
        "phone_number_id, access_token, app_secret, verify_token"
    )
    expect(status.locator("li")).to_have_text(
        ["Phone number ID", "Access token", "App secret", "Verify token"]
    )
    assert _settings(console, key, "whatsapp")["enabled"] is False


def test_phone_settings_forwarding_numbers_hours_and_guides(page: Any, console: Console) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    page.get_by_role("link", name="Phone").click()
    page.wait_for_url("**/console/channels/phone")
    page.get_by_label("Forwarding numbers").fill("06 12 34 56 78\n+33 1 98 76 54 32")
    page.get_by_label("Fallback number").fill("01 44 55 66 77")
    page.get_by_label("Greeting").fill("Bonjour, Cabinet Dupont, que puis-je faire pour vous ?")
    page.get_by_label("Slot length (minutes)").fill("45")
    page.get_by_label("Saturday").fill("10:00-13:00")
    page.get_by_label("Friday").fill("")
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.get_by_text("Saved.")).to_be_visible()
    settings = _settings(console, key, "phone")["settings"]
    assert settings["forwarding_numbers"] == ["+33612345678", "+33198765432"]
    assert settings["fallback_number"] == "+33144556677"
    assert settings["greeting"].startswith("Bonjour, Cabinet Dupont")
    booking = settings["booking"]
    assert booking["slot_minutes"] == 45
    assert booking["opening_hours"]["sat"] == [{"open": "10:00", "close": "13:00"}]
    assert booking["opening_hours"]["fri"] == []
    assert booking["opening_hours"]["mon"] == [
        {"open": "09:00", "close": "12:00"},
        {"open": "14:00", "close": "18:00"},
    ]
    assert page.get_by_label("Forwarding numbers").input_value() == "+33612345678\n+33198765432"

    # an hour range the API refuses is shown next to that day
    page.get_by_label("Monday").fill("12:00-09:00")
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.locator("#f-booking-opening-hours-mon-error")).to_contain_text(
        "close must be later than open"
    )

    guides = page.locator("section", has=page.get_by_role("heading", name="Forwarding your calls"))
    for operator in ("Orange", "SFR", "Bouygues Telecom", "Free"):
        card = guides.locator("article", has=page.get_by_role("heading", name=operator))
        expect(card).to_contain_text(f"*21*{SHARED_NUMBER}#")
        expect(card).to_contain_text(f"**21*{SHARED_NUMBER}#")
        expect(card).to_contain_text("#21#")


def test_sms_templates_with_live_preview_add_edit_remove(page: Any, console: Console) -> None:
    tenant, key = console.tenant()
    priced = console.http.put(
        f"/admin/tenants/{tenant['id']}/channels/sms/config",
        json={"price_per_segment": 0.08},
        headers=console.admin,
    )
    assert priced.status_code == 200
    sign_in(page, key)
    page.goto("/console/channels/sms")
    page.get_by_role("button", name="Add a template").click()
    page.get_by_label("Template name").fill("rappel")
    text = page.get_by_label("Template text")
    text.fill("Bonjour {name}, rappel de votre rendez-vous demain à {time}.")
    preview = page.locator(".sms-preview")
    expect(preview).to_contain_text("GSM-7")
    expect(preview).to_contain_text("1 segment(s)")
    expect(preview).to_contain_text("billed €0.0800 (€0.0800 per segment)")
    text.fill("Rendez-vous confirmé ✅ " + "x" * 60)  # an emoji: UCS-2, 70 then 67 per part
    expect(preview).to_contain_text("UCS-2")
    expect(preview).to_contain_text("2 segment(s)")
    expect(preview).to_contain_text("billed €0.1600")
    expect(preview).to_contain_text("UCS-2 because of: ✅")
    text.fill("Bonjour {name}, rappel de votre rendez-vous demain à {time}.")
    expect(preview).to_contain_text("1 segment(s)")
    page.get_by_role("button", name="Add a template").click()
    page.get_by_label("Template name").nth(1).fill("merci")
    page.get_by_label("Template text").nth(1).fill("Merci de votre visite !")
    page.get_by_label("Default message type").select_option("appointment_reminder")
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.get_by_text("Saved.")).to_be_visible()
    settings = _settings(console, key, "sms")["settings"]
    assert settings["templates"] == {
        "rappel": "Bonjour {name}, rappel de votre rendez-vous demain à {time}.",
        "merci": "Merci de votre visite !",
    }
    assert settings["default_message_type"] == "appointment_reminder"

    # edit one, remove the other (after a reload: the rows come from the API)
    page.reload()
    rappel = page.locator("[data-row]").filter(has=page.locator("input[value='rappel']"))
    merci = page.locator("[data-row]").filter(has=page.locator("input[value='merci']"))
    expect(rappel.locator(".sms-preview")).to_contain_text("1 segment(s)")
    rappel.get_by_label("Template text").fill("Bonjour {name}, à demain {time}.")
    merci.get_by_role("button", name="Remove").click()
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.get_by_text("Saved.")).to_be_visible()
    templates = _settings(console, key, "sms")["settings"]["templates"]
    assert templates == {"rappel": "Bonjour {name}, à demain {time}."}

    # an invalid name: the API's message on that row
    page.get_by_label("Template name").first.fill("bad name!")
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.locator("#tpl-error-0")).to_contain_text("String should match pattern")
    assert _settings(console, key, "sms")["settings"]["templates"] == templates


def test_whatsapp_provider_choice_shows_its_fields_and_the_webhook_url(
    page: Any, console: Console
) -> None:
    tenant, key = console.tenant()
    sign_in(page, key)
    page.goto("/console/channels/whatsapp")
    expect(page.get_by_label("Access token")).to_be_visible()
    expect(page.get_by_label("API key", exact=True)).to_be_hidden()
    page.get_by_label("Provider").select_option("360dialog")
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    expect(page.get_by_label("Access token")).to_be_hidden()
    expect(page.get_by_label("Phone number ID")).to_be_hidden()
    expect(page.get_by_label("Verify token")).to_be_visible()
    page.get_by_label("API key", exact=True).fill("d360-key-0123456789")
    page.get_by_label("Verify token").fill("webhook-secret-0042")
    page.get_by_role("button", name="Add a template").click()
    page.get_by_label("Alias").fill("reminder")
    page.get_by_label("WhatsApp template name").fill("appointment_reminder")
    page.get_by_label("Language").fill("fr")
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.get_by_text("Saved.")).to_be_visible()
    view = _settings(console, key, "whatsapp")
    assert view["settings"]["provider"] == "360dialog"
    assert view["settings"]["templates"] == {
        "reminder": {"name": "appointment_reminder", "language": "fr"}
    }
    assert view["secrets"]["api_key"] == {"set": True, "last4": "6789"}
    assert view["configured"] is True
    expect(page.get_by_label("API key", exact=True)).to_be_visible()  # the saved provider's fields
    expect(page.locator("[data-webhook-url]")).to_have_text(
        f"{console.url}/webhooks/whatsapp/{tenant['slug']}"
    )

    # clear a secret explicitly: the API then misses it
    page.get_by_label("Clear the stored API key").check()
    htmx_click(page, page.get_by_role("button", name="Save"))
    expect(page.get_by_text("Saved.")).to_be_visible()
    assert _settings(console, key, "whatsapp")["secrets"]["api_key"] == {"set": False}
    expect(page.locator("#channel-status")).to_contain_text("API key")


def test_channel_test_shows_its_outcome_then_the_rate_limit(page: Any, console: Console) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    page.goto("/console/channels/sms")
    field = page.get_by_label("Send the test to (phone number)")
    field.fill("12")
    htmx_click(page, page.get_by_role("button", name="Run the test"))
    expect(page.locator("#test-to-error")).to_be_visible()
    for _ in range(5):  # CHANNEL_TEST_RATE_LIMITER: 5 a minute per tenant and channel
        page.get_by_label("Send the test to (phone number)").fill("06 12 34 56 78")
        htmx_click(page, page.get_by_role("button", name="Run the test"))
        expect(page.locator("#channel-test")).to_contain_text(re.compile("Test (passed|failed)"))
        expect(page.locator("#channel-test")).to_contain_text("+33612345678")
    page.get_by_label("Send the test to (phone number)").fill("06 12 34 56 78")
    htmx_click(page, page.get_by_role("button", name="Run the test"))
    alert = page.locator("#channel-test [role=alert]")
    expect(alert).to_contain_text("Too many channel tests: at most 5 per 60 s")
    expect(alert).to_contain_text(re.compile(r"Try again in \d+ s"))
