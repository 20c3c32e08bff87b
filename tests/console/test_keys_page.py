"""The console's API keys page: every key with its scopes; the operator issues a scoped key
(shown once) and revokes one, with the API's own refusals; a tenant sees its keys and cannot
change them."""

from __future__ import annotations

import re

from tests.conftest import ADMIN_KEY, Api
from tests.console.test_console_http import _csrf, _signed_in, _tenant_key


async def _open_as_operator(api: Api, tenant_id: str) -> str:
    await _signed_in(api, ADMIN_KEY)
    opened = await api.client.get(f"/console/tenants/{tenant_id}")
    assert opened.status_code == 303
    return _csrf((await api.client.get("/console/keys")).text)


async def test_operator_issues_a_scoped_key_shown_once_that_the_api_holds_to(api: Api) -> None:
    tenant, _ = await _tenant_key(api)
    token = await _open_as_operator(api, tenant["id"])
    issued = await api.client.post(
        "/console/keys",
        data={"label": "reporting", "scopes": "read", "csrf_token": token},
    )
    assert issued.status_code == 201, issued.text
    shown = re.search(r'id="new-key-value" type="text" readonly value="(cgw_[^"]+)"', issued.text)
    assert shown, "the new key is not on the page"
    key = shown.group(1)
    assert "shown only once" in issued.text
    # the key does what its scope allows and nothing else
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/api/messages", headers=bearer)).status_code == 200
    refused = await api.client.post(
        "/api/channels/sms/send", json={"to": "+33612345678", "body": "hi"}, headers=bearer
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    # listed with its scope, and the key itself is not on the page any more
    listing = await api.client.get("/console/keys")
    assert key not in listing.text
    row = re.search(r"<tr>\s*<td>reporting</td>.*?</tr>", listing.text, re.S)
    assert row and "<td>read</td>" in row.group(0)
    admin = await api.client.get(
        f"/admin/tenants/{tenant['id']}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert [k["scopes"] for k in admin.json()["api_keys"] if k["label"] == "reporting"] == [
        ["read"]
    ]


async def test_the_page_refuses_what_the_api_refuses_and_issues_nothing(api: Api) -> None:
    tenant, _ = await _tenant_key(api)
    token = await _open_as_operator(api, tenant["id"])
    before = await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)
    for data, field in (
        ({"label": "no scopes"}, "key-scopes-error"),
        ({"label": "x" * 101, "scopes": "send"}, "key-label-error"),
        ({"label": "bad", "scopes": "admin"}, "key-scopes-error"),
    ):
        refused = await api.client.post("/console/keys", data={**data, "csrf_token": token})
        assert refused.status_code == 422, data
        error = re.search(rf'<div id="{field}"><p class="field-error">([^<]+)</p>', refused.text)
        assert error, (data, refused.text)
    after = await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)
    assert after.json()["api_keys"] == before.json()["api_keys"]


async def test_operator_revokes_a_key_and_it_stops_working(api: Api) -> None:
    tenant, key = await _tenant_key(api)
    keys = (await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)).json()
    key_id = keys["api_keys"][0]["id"]
    token = await _open_as_operator(api, tenant["id"])
    revoked = await api.client.post(f"/console/keys/{key_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/api/messages", headers=bearer)).status_code == 401
    assert "revoked on" in (await api.client.get("/console/keys")).text
    unknown = await api.client.post("/console/keys/key_nope/revoke", data={"csrf_token": token})
    assert unknown.status_code == 404 and "No API key" in unknown.text


async def test_a_tenant_sees_its_keys_and_cannot_issue_or_revoke(api: Api) -> None:
    tenant, key = await _tenant_key(api)
    token = await _signed_in(api, key)
    page = await api.client.get("/console/keys")
    assert page.status_code == 200
    assert 'id="key-form"' not in page.text and "Revoke" not in page.text
    assert "<td>read, send, config</td>" in page.text
    keys = (await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)).json()
    for path, data in (
        ("/console/keys", {"label": "mine", "scopes": "send"}),
        (f"/console/keys/{keys['api_keys'][0]['id']}/revoke", {}),
    ):
        refused = await api.client.post(path, data={**data, "csrf_token": token})
        assert refused.status_code == 403 and "Only the operator" in refused.text
    after = (await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)).json()
    assert after["api_keys"] == keys["api_keys"]


async def test_keys_forms_need_the_csrf_token(api: Api) -> None:
    tenant, _ = await _tenant_key(api)
    await _open_as_operator(api, tenant["id"])
    refused = await api.client.post("/console/keys", data={"label": "x", "scopes": "read"})
    assert refused.status_code == 403 and "CSRF" in refused.text
