from __future__ import annotations

import pytest

from tests.conftest import ADMIN_KEY, Api


async def test_create_tenant_returns_key_once_and_four_disabled_channels(api: Api) -> None:
    response = await api.client.post(
        "/admin/tenants",
        json={"name": "Cabinet Dupont", "slug": "cabinet-dupont", "timezone": "Europe/Paris"},
        headers=api.admin,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["tenant"]["slug"] == "cabinet-dupont"
    assert body["tenant"]["id"].startswith("ten_")
    assert body["api_key"].startswith("cgw_")
    assert [(c["channel"], c["enabled"]) for c in body["channels"]] == [
        ("phone", False),
        ("sms", False),
        ("email", False),
        ("whatsapp", False),
    ]
    detail = await api.client.get(f"/admin/tenants/{body['tenant']['id']}", headers=api.admin)
    assert detail.status_code == 200
    assert body["api_key"] not in detail.text, "the key is shown once only"
    assert detail.json()["api_keys"][0]["prefix"] in body["api_key"]
    tenant_key = {"Authorization": f"Bearer {body['api_key']}"}
    assert (await api.client.get("/api/channels", headers=tenant_key)).status_code == 200


async def test_duplicate_slug_is_a_conflict(api: Api) -> None:
    await api.create_tenant("acme")
    response = await api.client.post(
        "/admin/tenants", json={"name": "Other", "slug": "acme"}, headers=api.admin
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slug_taken"
    listing = await api.client.get("/admin/tenants", headers=api.admin)
    assert [t["slug"] for t in listing.json()["tenants"]] == ["acme"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"slug": "ok-slug"}, ["name"]),
        ({"name": "X", "slug": "Bad Slug"}, ["slug"]),
        ({"name": "X", "slug": "ok-slug", "timezone": "Mars/Olympus"}, ["timezone"]),
        ({"name": "", "slug": "x"}, ["name", "slug"]),
        ({"name": "X", "slug": "ok-slug", "plan": "gold"}, ["plan"]),
    ],
)
async def test_create_tenant_bad_fields_are_422_naming_each(
    api: Api, body: dict[str, str], fields: list[str]
) -> None:
    response = await api.client.post("/admin/tenants", json=body, headers=api.admin)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert sorted(f["field"] for f in error["details"]["fields"]) == sorted(fields)
    listing = await api.client.get("/admin/tenants", headers=api.admin)
    assert listing.json()["tenants"] == [], "nothing is written for a bad request"


async def test_list_tenants_paginates(api: Api) -> None:
    for slug in ("t-one", "t-two", "t-three"):
        await api.create_tenant(slug)
    first = (await api.client.get("/admin/tenants?limit=2", headers=api.admin)).json()
    assert len(first["tenants"]) == 2 and first["next_cursor"]
    second = (
        await api.client.get(
            f"/admin/tenants?limit=2&after={first['next_cursor']}", headers=api.admin
        )
    ).json()
    slugs = [t["slug"] for t in first["tenants"] + second["tenants"]]
    assert sorted(slugs) == ["t-one", "t-three", "t-two"]
    assert second["next_cursor"] is None
    bad = await api.client.get("/admin/tenants?limit=0", headers=api.admin)
    assert bad.status_code == 422


async def test_api_keys_issue_use_and_revoke(api: Api) -> None:
    tenant, first_key = await api.create_tenant("acme")
    response = await api.client.post(
        f"/admin/tenants/{tenant['id']}/api-keys", json={"label": "ci"}, headers=api.admin
    )
    assert response.status_code == 201
    second = response.json()
    second_key = {"Authorization": f"Bearer {second['key']}"}
    assert (await api.client.get("/api/channels", headers=second_key)).status_code == 200

    keys = (await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)).json()
    by_id = {k["id"]: k for k in keys["api_keys"]}
    assert by_id[second["id"]]["last_used_at"] is not None
    assert "key_hash" not in by_id[second["id"]]

    revoke = await api.client.delete(
        f"/admin/tenants/{tenant['id']}/api-keys/{second['id']}", headers=api.admin
    )
    assert revoke.status_code == 204
    after = await api.client.get("/api/channels", headers=second_key)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "unknown_api_key"
    assert (await api.client.get("/api/channels", headers=first_key)).status_code == 200


async def test_revoking_an_unknown_or_foreign_key_is_404(api: Api) -> None:
    a, _ = await api.create_tenant("tenant-a")
    b, _ = await api.create_tenant("tenant-b")
    b_keys = (await api.client.get(f"/admin/tenants/{b['id']}", headers=api.admin)).json()
    foreign = b_keys["api_keys"][0]["id"]
    for key_id in ("key_nope", foreign):
        response = await api.client.delete(
            f"/admin/tenants/{a['id']}/api-keys/{key_id}", headers=api.admin
        )
        assert response.status_code == 404
    assert (await api.client.get("/admin/tenants/ten_nope", headers=api.admin)).status_code == 404


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_api_key"),
        ({"Authorization": "Basic abc"}, 401, "missing_api_key"),
        ({"Authorization": "Bearer not-a-key"}, 401, "unknown_api_key"),
        ({"Authorization": "Bearer cgw_00000000_forged"}, 403, "wrong_key_kind"),
    ],
)
async def test_admin_endpoints_refuse_other_credentials(
    api: Api, headers: dict[str, str], status: int, code: str
) -> None:
    response = await api.client.get("/admin/tenants", headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_tenant_key_on_admin_endpoint_is_403_and_admin_key_on_tenant_endpoint_is_403(
    api: Api,
) -> None:
    _, tenant_key = await api.create_tenant("acme")
    response = await api.client.get("/admin/tenants", headers=tenant_key)
    assert response.status_code == 403
    response = await api.client.get(
        "/api/channels", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_key_kind"
    unknown = await api.client.get("/api/channels", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401


@pytest.mark.parametrize(("given", "stored"), [("FR", "FR"), ("us", "US"), (" be ", "BE")])
async def test_a_tenant_country_is_stored_upper_case_and_shown(
    api: Api, given: str, stored: str
) -> None:
    response = await api.client.post(
        "/admin/tenants",
        json={"name": "Cabinet", "slug": "cabinet", "timezone": "UTC", "country": given},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    tenant = response.json()["tenant"]
    assert tenant["country"] == stored
    detail = await api.client.get(f"/admin/tenants/{tenant['id']}", headers=api.admin)
    assert detail.json()["tenant"]["country"] == stored
    listing = await api.client.get("/admin/tenants", headers=api.admin)
    assert [t["country"] for t in listing.json()["tenants"]] == [stored]


@pytest.mark.parametrize("country", ["XX", "FRA", "France", "001", "F"])
async def test_a_country_phonenumbers_does_not_know_is_422(api: Api, country: str) -> None:
    response = await api.client.post(
        "/admin/tenants",
        json={"name": "Cabinet", "slug": "cabinet", "country": country},
        headers=api.admin,
    )
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["details"]["fields"]] == ["country"]
    listing = await api.client.get("/admin/tenants", headers=api.admin)
    assert listing.json()["tenants"] == []
