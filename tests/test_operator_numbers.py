"""The operator's numbers, from the settings: no tenant can claim one (services/numbers.py),
neither as a number it forwards from nor, through the operator, as a dedicated number."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from gateway.config import Settings
from tests.conftest import TWILIO, Api, running_api

NUMBER = "+33939035762"


async def _claim(api: Api, kind: str) -> tuple[httpx.Response, list[str]]:
    tenant, key = await api.create_tenant("acme")
    if kind == "forwarding_numbers":
        url, headers = "/api/channels/phone/config", key
    else:  # a dedicated number is the operator's to give
        url, headers = f"/admin/tenants/{tenant['id']}/channels/phone/config", api.admin
    response = await api.client.put(url, json={kind: [NUMBER]}, headers=headers)
    stored = (await api.client.get("/api/channels/phone/config", headers=key)).json()
    numbers: list[str] = stored["settings"].get(kind) or stored["operator_settings"].get(kind, [])
    return response, numbers


@pytest.mark.parametrize("kind", ["forwarding_numbers", "dedicated_numbers"])
@pytest.mark.parametrize(
    "settings",
    [
        # the Telnyx sender receives every tenant's replies, like the shared line
        {"TELNYX_PHONE_NUMBER": NUMBER},
        {"TWILIO_PHONE_NUMBER": NUMBER},
        {"OPERATOR_NUMBERS": f"+33939099999, {NUMBER}"},
    ],
    ids=["telnyx-sender", "shared-line", "listed"],
)
async def test_a_tenant_cannot_claim_a_number_of_the_operator(
    make_settings: Callable[..., Settings], kind: str, settings: dict[str, str]
) -> None:
    async with running_api(make_settings(**{**TWILIO, **settings})) as api:
        response, stored = await _claim(api, kind)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "number_taken"
    assert error["details"] == {"number": NUMBER, "reason": "operator_number"}
    assert stored == [], "nothing stored"


@pytest.mark.parametrize("kind", ["forwarding_numbers", "dedicated_numbers"])
async def test_a_number_the_operator_does_not_use_can_be_claimed(
    make_settings: Callable[..., Settings], kind: str
) -> None:
    async with running_api(make_settings(**TWILIO)) as api:
        response, stored = await _claim(api, kind)
    assert response.status_code == 200, response.text
    assert stored == [NUMBER]
