"""Every status write of the dispatcher is a conditional transition (issue 9, item 4): a
status a provider reported is never overwritten by the dispatcher's late bookkeeping, and
`attempts` counts every attempt (item 12d)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings
from gateway.domain.messages import StatusReport
from gateway.ids import now_iso
from gateway.providers.base import ProviderError, SendResult
from gateway.store import messages as store
from tests.conftest import TWILIO, Api, running_api
from tests.stack import Stack, running_stack
from tests.test_messages_api import sms_tenant
from tests.test_sms_e2e import message, wait_status


@pytest.fixture
async def api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    async with running_api(make_settings(**TWILIO)) as running:
        yield running


async def claimed_then_delivered(api: Api) -> tuple[Any, dict[str, str]]:
    """A message the dispatcher claimed (its row as the dispatcher holds it), which the
    provider's callbacks then reported delivered."""
    key = await sms_tenant(api)
    accepted = await api.client.post(
        "/api/channels/sms/send", json={"to": "+33612345678", "body": "hi"}, headers=key
    )
    assert accepted.status_code == 202
    gateway = api.gateway
    [row] = await gateway.db.write_fn(lambda c: store.claim_due(c, now_iso(), 10))
    report = StatusReport(
        "delivered",
        "delivered",
        "twilio_status",
        {},
        provider_message_id="SM" + "1" * 32,
        message_id=row["id"],
        provider="twilio",
    )
    applied = await gateway.inbound.apply_status(report)
    assert applied is not None and applied.changed
    return row, key


@pytest.mark.parametrize("path", ["unknown", "retry", "fail", "sent"])
async def test_the_dispatcher_never_overwrites_a_reported_status(api: Api, path: str) -> None:
    row, key = await claimed_then_delivered(api)
    dispatcher = api.gateway.dispatcher
    if path == "unknown":
        await dispatcher._mark_unknown(row, ProviderError("unknown", "read timeout"))
    elif path == "retry":
        await dispatcher._retry_or_fail(row, ProviderError("transient", "HTTP 500"))
    elif path == "fail":
        await dispatcher._fail(row, ProviderError("permanent", "invalid number", code="21211"))
    else:
        result = SendResult("twilio", "SM" + "1" * 32, "queued", num_segments=1)
        await dispatcher._record_sent(row, result, source="dispatcher")
    found = (await api.client.get(f"/api/messages/{row['id']}", headers=key)).json()
    assert found["status"] == "delivered"
    assert found["needs_reconciliation"] is False
    assert found["error_code"] is None and found["failed_at"] is None
    late = [e for e in found["events"] if e["source"] == "dispatcher"]
    assert late and not any(e["applied"] for e in late), "recorded, not applied"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as running:
        yield running


async def test_attempts_count_every_attempt(stack: Stack) -> None:
    stack.twilio.add_fault("500", 2)
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        retried = await http.post(
            "/api/channels/sms/send", json={"to": "+33612345678", "body": "third time"}, headers=key
        )
        done = await wait_status(http, key, retried.json()["id"], "delivered")
        stack.twilio.add_fault("21211")
        refused = await http.post(
            "/api/channels/sms/send", json={"to": "+33612345679", "body": "refused"}, headers=key
        )
        failed = await wait_status(http, key, refused.json()["id"], "failed")
        test = await http.post(
            "/api/channels/test", json={"channel": "sms", "to": "+33612345670"}, headers=key
        )
        tested = await message(http, key, test.json()["message_id"])
    assert done["attempts"] == 3
    assert failed["attempts"] == 1
    assert tested["attempts"] == 1


async def test_a_look_up_that_times_out_is_asked_again_not_failed(stack: Stack) -> None:
    """A send whose answer is lost is looked up at the provider; when that look-up's own
    answer is lost too (a read, without effect at the provider), the message is looked up
    again later — it used to be marked failed, although the provider had it."""
    stack.twilio.add_fault("hang")  # Twilio takes the message, its answer is lost
    stack.twilio.lookups_to_hang = 1  # and so is the answer to the first look-up
    stack.twilio.callback_delay = 60.0  # no status callback tells us meanwhile
    async with stack.client() as http:
        key = await stack.tenant(http, "acme")
        accepted = await http.post(
            "/api/channels/sms/send", json={"to": "+33612345678", "body": "once"}, headers=key
        )
        found = await wait_status(http, key, accepted.json()["id"], "sent")
    [at_twilio] = stack.twilio.messages
    assert found["provider_message_id"] == at_twilio["sid"]
    assert stack.twilio.lookups_to_hang == 0, "the first look-up hung"
