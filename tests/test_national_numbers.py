"""National-format phone numbers are read in the tenant's country: its explicit `country`,
else the country of its time zone. "06 12 34 56 78" is +33612345678 for a tenant in Paris,
a 422 for a tenant whose region is unknown (UTC), and a Belgian number for a tenant whose
country is BE."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.config import Settings
from gateway.regions import region_for_timezone, tenant_region
from gateway.validation import normalize_e164
from tests.conftest import TWILIO, Api, running_api

NATIONAL = "06 12 34 56 78"
E164 = "+33612345678"


@dataclass
class _Tenant:
    country: str | None
    timezone: str


@pytest.mark.parametrize(
    ("tenant", "region"),
    [
        (_Tenant(None, "Europe/Paris"), "FR"),
        (_Tenant(None, "America/New_York"), "US"),
        (_Tenant(None, "Asia/Calcutta"), "IN"),  # an old name of Asia/Kolkata
        (_Tenant(None, "US/Eastern"), "US"),
        (_Tenant(None, "UTC"), None),
        (_Tenant("BE", "Europe/Paris"), "BE"),
    ],
)
def test_the_region_is_the_country_else_the_time_zones(tenant: _Tenant, region: str | None) -> None:
    assert tenant_region(tenant) == region


def test_an_unknown_time_zone_has_no_region() -> None:
    assert region_for_timezone("Mars/Olympus") is None
    assert region_for_timezone(None) is None


@pytest.mark.parametrize(
    ("number", "region", "e164"),
    [
        (NATIONAL, "FR", E164),
        ("0612345678", "FR", E164),
        ("+33 6 12 34 56 78", None, E164),
        ("0033612345678", "US", E164),
        ("(415) 555-2671", "US", "+14155552671"),
        ("0470 12 34 56", "BE", "+32470123456"),
    ],
)
def test_normalize_e164_reads_national_numbers_in_a_region(
    number: str, region: str | None, e164: str
) -> None:
    assert normalize_e164(number, region) == e164


@pytest.mark.parametrize(
    ("number", "region"), [(NATIONAL, None), (NATIONAL, "BE"), ("06 12", "FR"), ("x" * 100, "FR")]
)
def test_normalize_e164_refuses_what_it_cannot_read(number: str, region: str | None) -> None:
    with pytest.raises(ValueError):
        normalize_e164(number, region)


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def tenant(
    api: Api, slug: str, timezone: str = "Europe/Paris", country: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {"name": slug.title(), "slug": slug, "timezone": timezone}
    if country:
        body["country"] = country
    response = await api.client.post("/admin/tenants", json=body, headers=api.admin)
    assert response.status_code == 201, response.text
    created = response.json()
    key = {"Authorization": f"Bearer {created['api_key']}"}
    toggled = await api.client.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert toggled.status_code == 200, toggled.text
    return created["tenant"], key


async def send(api: Api, key: dict[str, str], to: str) -> Any:
    return await api.client.post(
        "/api/channels/sms/send", json={"to": to, "body": "Bonjour"}, headers=key
    )


@pytest.mark.parametrize(
    ("timezone", "country", "to", "stored"),
    [
        ("Europe/Paris", None, NATIONAL, E164),
        ("America/New_York", None, "(415) 555-2671", "+14155552671"),
        ("Europe/Paris", "BE", "0470 12 34 56", "+32470123456"),
        ("UTC", None, "+33 6 12 34 56 78", E164),
    ],
)
async def test_a_send_to_a_national_number_reaches_its_e164(
    api: Api, timezone: str, country: str | None, to: str, stored: str
) -> None:
    _, key = await tenant(api, "cabinet", timezone, country)
    response = await send(api, key, to)
    assert response.status_code == 202, response.text
    assert response.json()["to"] == stored
    listed = await api.client.get("/api/messages", params={"to": to}, headers=key)
    assert [m["to"] for m in listed.json()["messages"]] == [stored]


@pytest.mark.parametrize(
    ("timezone", "country"), [("UTC", None), ("Europe/Paris", "BE"), ("America/New_York", None)]
)
async def test_a_national_number_of_another_country_is_422(
    api: Api, timezone: str, country: str | None
) -> None:
    _, key = await tenant(api, "cabinet", timezone, country)
    response = await send(api, key, NATIONAL)
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["details"]["fields"]] == ["to"]
    filtered = await api.client.get("/api/messages", params={"to": NATIONAL}, headers=key)
    assert filtered.status_code == 422


async def test_phone_settings_store_national_numbers_in_e164(api: Api) -> None:
    created, key = await tenant(api, "cabinet")
    response = await api.client.put(
        "/api/channels/phone/config",
        json={"forwarding_numbers": ["01 45 67 89 01"], "fallback_number": NATIONAL},
        headers=key,
    )
    assert response.status_code == 200, response.text
    settings = response.json()["settings"]
    assert settings["forwarding_numbers"] == ["+33145678901"]
    assert settings["fallback_number"] == E164
    rows = await api.gateway.db.fetchall("SELECT e164, tenant_id FROM tenant_numbers")
    assert [(r["e164"], r["tenant_id"]) for r in rows] == [("+33145678901", created["id"])]
    # the same national number twice is the same number twice
    twice = await api.client.post(
        "/api/channels/phone/config",
        json={"forwarding_numbers": ["01 45 67 89 01", "+33145678901"]},
        headers=key,
    )
    assert twice.status_code == 422, twice.text


async def test_the_operator_writes_a_tenants_numbers_in_its_country(api: Api) -> None:
    created, _ = await tenant(api, "cabinet")
    response = await api.client.put(
        f"/admin/tenants/{created['id']}/channels/phone/config",
        json={"dedicated_numbers": ["09 39 03 57 62"]},
        headers=api.admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["operator_settings"]["dedicated_numbers"] == ["+33939035762"]


async def test_appointments_and_their_phone_filter_read_national_numbers(api: Api) -> None:
    _, key = await tenant(api, "cabinet")
    api.gateway.booking.clock = lambda: datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    booked = await api.client.post(
        "/api/appointments",
        json={
            "customer_name": "Ana Martin",
            "customer_phone": NATIONAL,
            "starts_at": "2026-12-01T09:00:00+01:00",
        },
        headers=key,
    )
    assert booked.status_code == 201, booked.text
    assert booked.json()["customer_phone"] == E164
    listed = await api.client.get("/api/appointments", params={"phone": NATIONAL}, headers=key)
    assert [a["id"] for a in listed.json()["appointments"]] == [booked.json()["id"]]


async def test_one_contacts_timeline_reads_a_national_number(api: Api) -> None:
    _, key = await tenant(api, "cabinet")
    sent = await send(api, key, E164)
    assert sent.status_code == 202, sent.text
    page = await api.client.get("/api/communications", params={"contact": NATIONAL}, headers=key)
    assert page.status_code == 200, page.text
    assert page.json()["contact"] == E164
    assert [item["id"] for item in page.json()["items"]] == [sent.json()["id"]]
