"""The WhatsApp webhook does not tell existing tenant slugs from unknown ones (issue 9,
item 12i): an unknown slug is refused exactly like a wrong token or signature."""

from __future__ import annotations

import pytest

from tests.conftest import Api


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_and_existing_slugs_answer_alike(api: Api, method: str) -> None:
    await api.create_tenant("cabinet-dupont")
    answers = []
    for slug in ("cabinet-dupont", "no-such-tenant"):
        url = f"/webhooks/whatsapp/{slug}"
        if method == "GET":
            params = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
            response = await api.client.get(url, params=params)
        else:
            response = await api.client.post(
                url,
                content=b'{"object": "whatsapp_business_account", "entry": []}',
                headers={"content-type": "application/json", "x-hub-signature-256": "sha256=00"},
            )
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403
