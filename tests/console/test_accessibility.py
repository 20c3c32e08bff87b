"""An axe-style check of every console page: each input, select and textarea has a visible
label (`<label for>` or `aria-labelledby`) with text, each button and link a name, ids are
unique and `aria-describedby` points at something; the page has a language, a title and one
h1. Run on each page as first shown, after a save the API refused, and as the operator."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN_KEY
from tests.console.conftest import Console, htmx_click, sign_in

CHECK = """() => {
  const problems = [];
  const shown = (el) => {
    if (el.closest("template")) return false;
    const style = getComputedStyle(el);
    return el.getClientRects().length > 0 && style.visibility !== "hidden";
  };
  const describe = (el) => el.outerHTML.slice(0, 120);
  const textOf = (el) => (el.innerText || el.textContent || "").trim();
  for (const field of document.querySelectorAll("input, select, textarea")) {
    if (field.type === "hidden" || field.closest("template")) continue;
    const labels = field.id
      ? [...document.querySelectorAll(`label[for="${CSS.escape(field.id)}"]`)] : [];
    const by = (field.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean)
      .map((id) => document.getElementById(id)).filter(Boolean);
    const names = [...labels, ...by].filter((el) => textOf(el));
    if (names.length === 0) problems.push("no label: " + describe(field));
    else if (shown(field) && !names.some(shown)) {
      problems.push("label not visible: " + describe(field));
    }
    if (labels.length > 1) problems.push("several labels: " + describe(field));
  }
  for (const control of document.querySelectorAll("button, a[href], [role=button]")) {
    if (control.closest("template")) continue;
    const name = control.getAttribute("aria-label") || textOf(control) || control.title;
    if (!(name || "").trim()) problems.push("no name: " + describe(control));
  }
  const ids = [...document.querySelectorAll("[id]")].filter((el) => !el.closest("template"))
    .map((el) => el.id);
  for (const id of new Set(ids)) {
    if (ids.filter((x) => x === id).length > 1) problems.push("duplicate id: " + id);
  }
  for (const el of document.querySelectorAll("[aria-describedby]")) {
    if (el.closest("template")) continue;
    for (const id of el.getAttribute("aria-describedby").split(/\\s+/)) {
      if (!document.getElementById(id)) problems.push("no element " + id + ": " + describe(el));
    }
  }
  if (!document.documentElement.lang) problems.push("no lang");
  if (!document.title.trim()) problems.push("no title");
  if (document.querySelectorAll("h1").length !== 1) problems.push("h1 count");
  return problems;
}"""

TENANT_PAGES = (
    "/console/",
    "/console/channels/phone",
    "/console/channels/sms",
    "/console/channels/email",
    "/console/channels/whatsapp",
    "/console/keys",
)


def _check(page: Any) -> None:
    problems = page.evaluate(CHECK)
    assert problems == [], f"{page.url}: {problems}"


def test_sign_in_page_labels(page: Any) -> None:
    page.goto("/console/sign-in")
    _check(page)
    page.get_by_label("API key").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    _check(page)


def test_every_tenant_page_has_labels_and_names(page: Any, console: Console) -> None:
    _, key = console.tenant()
    sign_in(page, key)
    for path in TENANT_PAGES:
        page.goto(path)
        _check(page)
    # with rows added, errors shown and a secret stored (its "clear" box appears)
    page.goto("/console/channels/sms")
    page.get_by_role("button", name="Add a template").click()
    page.get_by_role("button", name="Add a template").click()
    page.get_by_label("Template name").first.fill("bad name!")
    page.get_by_label("Template text").first.fill("Bonjour")
    htmx_click(page, page.get_by_role("button", name="Save"))
    assert page.locator(".field-error").count() > 0
    _check(page)
    page.goto("/console/channels/whatsapp")
    page.get_by_label("Access token").fill("token-0123456789")
    page.get_by_label("Phone number ID").fill("12")  # the API wants 5 to 20 digits
    htmx_click(page, page.get_by_role("button", name="Save"))
    assert page.locator("#f-phone-number-id-error").count() == 1
    _check(page)
    page.get_by_label("Phone number ID").fill("106540352242922")
    page.get_by_label("Access token").fill("token-0123456789")  # a refused save kept no secret
    htmx_click(page, page.get_by_role("button", name="Save"))
    assert page.get_by_label("Clear the stored Access token").count() == 1
    _check(page)
    page.get_by_label("Send the test to (phone number)").fill("x")
    htmx_click(page, page.get_by_role("button", name="Run the test"))
    _check(page)


def test_operator_pages_have_labels_and_names(page: Any, console: Console) -> None:
    console.tenant("Cabinet Dupont")
    sign_in(page, ADMIN_KEY)
    _check(page)  # the tenants list
    page.get_by_role("link", name="Cabinet Dupont").first.click()
    page.wait_for_url("**/console/")
    for path in TENANT_PAGES:
        page.goto(path)
        _check(page)


def test_french_pages_have_labels_and_names(new_page: Any, console: Console) -> None:
    page = new_page(locale="fr-FR")
    _, key = console.tenant()
    page.goto("/console/sign-in")
    page.get_by_label("Clé d'API").fill(key)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url("**/console/")
    for path in TENANT_PAGES:
        page.goto(path)
        _check(page)
