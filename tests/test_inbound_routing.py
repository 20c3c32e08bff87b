"""Who an inbound SMS belongs to (issue 9, item 1): a number dedicated to a tenant routes by
ownership; on the shared line it goes to the tenant that last wrote to that contact from the
shared line — never to a tenant that registered the shared number as its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.sandbox.twilio_webhooks import inbound_sms_params, post_signed_form
from tests.stack import ACCOUNT_SID, AUTH_TOKEN, SHARED_NUMBER, Stack, running_stack
from tests.test_sms_e2e import wait_status

CLIENT = "+33612345678"
DEDICATED = "+33939011111"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


async def inbound(stack: Stack, http: httpx.AsyncClient, to: str, body: str) -> None:
    params = inbound_sms_params(CLIENT, to, body, ACCOUNT_SID)
    reply = await post_signed_form(http, f"{stack.url}/webhooks/twilio/sms", params, AUTH_TOKEN)
    assert reply.status_code == 200


async def inbox(http: httpx.AsyncClient, key: dict[str, str]) -> list[str]:
    listing = (await http.get("/api/messages?direction=inbound", headers=key)).json()
    return [m["body"] for m in listing["messages"]]


async def send(http: httpx.AsyncClient, key: dict[str, str], body: str) -> None:
    response = await http.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": body}, headers=key
    )
    assert response.status_code == 202, response.text
    await wait_status(http, key, response.json()["id"], "delivered")


async def test_a_squatted_shared_number_gets_no_inbound_and_stop_spares_it(
    stack: Stack,
) -> None:
    async with stack.client() as http:
        writer = await stack.tenant(http, "writer")
        squatter = await stack.tenant(http, "squatter")
        squatter_id = (await http.get("/admin/tenants/squatter", headers=stack.admin)).json()[
            "tenant"
        ]["id"]
        # as an older version let it: the shared number registered as a forwarding number
        await stack.app.state.gateway.db.execute_write(
            "INSERT INTO tenant_numbers (e164, tenant_id, kind, created_at) "
            "VALUES (?, ?, 'forwarding', '2026-01-01T00:00:00.000Z')",
            (SHARED_NUMBER, squatter_id),
        )
        await send(http, writer, "Votre rendez-vous est confirmé")
        await inbound(stack, http, SHARED_NUMBER, "Merci !")
        await inbound(stack, http, SHARED_NUMBER, "STOP")
        assert await inbox(http, writer) == ["STOP", "Merci !"]
        assert await inbox(http, squatter) == []
        blocked = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "encore"}, headers=writer
        )
        spared = await http.post(
            "/api/channels/sms/send", json={"to": CLIENT, "body": "bonjour"}, headers=squatter
        )
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "recipient_suppressed"
    assert spared.status_code == 202, "a STOP to the writer does not suppress for the squatter"


async def test_a_dedicated_number_routes_by_ownership(stack: Stack) -> None:
    async with stack.client() as http:
        owner = await stack.tenant(http, "owner")
        other = await stack.tenant(http, "other")
        owner_id = (await http.get("/admin/tenants/owner", headers=stack.admin)).json()["tenant"][
            "id"
        ]
        dedicated = await http.put(
            f"/admin/tenants/{owner_id}/channels/phone/config",
            json={"dedicated_numbers": [DEDICATED]},
            headers=stack.admin,
        )
        assert dedicated.status_code == 200, dedicated.text
        # the other tenant wrote to the client last, from the shared line
        await send(http, other, "Bonjour de la part d'un autre cabinet")
        await inbound(stack, http, DEDICATED, "Je confirme")
        await inbound(stack, http, SHARED_NUMBER, "Bien reçu")
        assert await inbox(http, owner) == ["Je confirme"]
        assert await inbox(http, other) == ["Bien reçu"]


async def test_an_inbound_sms_from_a_contact_nobody_wrote_to_is_nobodys(stack: Stack) -> None:
    async with stack.client() as http:
        tenant = await stack.tenant(http, "acme")
        await inbound(stack, http, SHARED_NUMBER, "Qui êtes-vous ?")
        assert await inbox(http, tenant) == []
