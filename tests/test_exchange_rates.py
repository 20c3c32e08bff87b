"""The daily USD→EUR rate from the ECB's euro reference rates: the feed's real shape, a
hostile or unreachable feed (fallback and a warning), one fetch a day across instances, the
rate a message is priced at, and the sandbox's feed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config import Settings
from gateway.domain.messages import StatusReport
from gateway.errors import ConfigError
from gateway.providers.ecb import feed
from gateway.sandbox import ecb_feed
from gateway.sandbox.server import ServerThread
from tests.conftest import TWILIO, Api, running_api

# the ECB's eurofxref-daily.xml as published (abridged to four of its currencies)
REAL_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
\t<gesmes:subject>Reference rates</gesmes:subject>
\t<gesmes:Sender>
\t\t<gesmes:name>European Central Bank</gesmes:name>
\t</gesmes:Sender>
\t<Cube>
\t\t<Cube time='2025-11-14'>
\t\t\t<Cube currency='USD' rate='1.1625'/>
\t\t\t<Cube currency='JPY' rate='179.74'/>
\t\t\t<Cube currency='BGN' rate='1.9558'/>
\t\t\t<Cube currency='CZK' rate='24.219'/>
\t\t</Cube>
\t</Cube>
</gesmes:Envelope>
"""

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Cube><Cube time='2025-11-14'><Cube currency='USD' rate='&lol3;'/></Cube></Cube>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Cube><Cube time='2025-11-14'><Cube currency='USD' rate='&x;'/></Cube></Cube>"""


class Feed:
    """A feed on loopback whose answer a test sets, counting the requests it gets."""

    def __init__(self, body: bytes = REAL_FEED, status: int = 200) -> None:
        self.body, self.status, self.hits = body, status, 0

    async def serve(self, request: Request) -> Response:
        self.hits += 1
        await asyncio.sleep(0.05)  # long enough for a second instance to look meanwhile
        return Response(self.body, status_code=self.status, media_type="text/xml")


@pytest.fixture
def served() -> Iterator[tuple[Feed, str]]:
    state = Feed()
    app = Starlette(routes=[Route("/eurofxref-daily.xml", state.serve)])
    with ServerThread(app) as server:
        yield state, f"{server.base_url}/eurofxref-daily.xml"


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_the_real_feed_shape_gives_eur_per_usd() -> None:
    rates = feed.parse(REAL_FEED)
    assert rates.day == "2025-11-14"
    assert rates.eur_per_unit("USD") == Decimal(1) / Decimal("1.1625")
    assert set(rates.per_euro) == {"USD", "JPY", "BGN", "CZK"}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BOMB, "document type"),
        (EXTERNAL, "document type"),
        (b"<html>maintenance</html>", "names no day"),
        (b"<Cube><Cube time='2025-11-14'><Cube currency='USD' rate='1.1'/>", "not well-formed"),
        (
            b"<Cube><Cube time='2025-11-14'><Cube currency='USD' rate='abc'/></Cube></Cube>",
            "not a number",
        ),
        (
            b"<Cube><Cube time='2025-11-14'><Cube currency='USD' rate='0'/></Cube></Cube>",
            "positive",
        ),
        (
            b"<Cube><Cube time='2025-11-14'><Cube currency='JPY' rate='170'/></Cube></Cube>",
            "no USD",
        ),
    ],
)
def test_hostile_or_malformed_feeds_are_refused(document: bytes, reason: str) -> None:
    with pytest.raises(feed.FeedError, match=reason):
        feed.parse(document).eur_per_unit("USD")


async def test_the_day_rate_is_fetched_stored_and_used(
    make_settings: Callable[..., Settings], served: tuple[Feed, str]
) -> None:
    state, url = served
    async with running_api(make_settings(EXCHANGE_RATE_URL=url)) as api:
        exchange = api.gateway.exchange
        assert await exchange.rate_for() == 0.92  # nothing stored yet: USD_EUR_RATE
        assert await exchange.refresh() is True
        assert await exchange.rate_for() == round(1 / 1.1625, 6)
        row = await api.gateway.db.fetchone("SELECT * FROM exchange_rates")
        assert row["day"] == today() and row["currency"] == "USD"
        assert row["source"] == "ecb:2025-11-14"
        assert await exchange.refresh() is False and state.hits == 1


async def test_exchange_rate_url_off_fetches_nothing_and_uses_the_fixed_rate(
    make_settings: Callable[..., Settings], served: tuple[Feed, str]
) -> None:
    state, _ = served
    async with running_api(make_settings(EXCHANGE_RATE_URL="off", USD_EUR_RATE="0.9")) as api:
        assert await api.gateway.exchange.refresh() is False
        assert await api.gateway.exchange.rate_for() == 0.9
        assert await api.gateway.db.fetchone("SELECT * FROM exchange_rates") is None
    assert state.hits == 0


@pytest.mark.parametrize("value", ["ftp://rates.example/feed.xml", "offline"])
def test_a_bad_exchange_rate_url_is_refused_at_start(
    make_settings: Callable[..., Settings], value: str
) -> None:
    with pytest.raises(ConfigError, match="EXCHANGE_RATE_URL"):
        make_settings(EXCHANGE_RATE_URL=value).typed  # noqa: B018 (validated when read)


@pytest.mark.parametrize("body", [BOMB, b"not xml at all", b""])
async def test_a_hostile_feed_falls_back_and_logs_why(
    make_settings: Callable[..., Settings],
    served: tuple[Feed, str],
    caplog: pytest.LogCaptureFixture,
    body: bytes,
) -> None:
    state, url = served
    state.body = body
    async with running_api(make_settings(EXCHANGE_RATE_URL=url)) as api:
        with caplog.at_level(logging.WARNING, logger="gateway.exchange"):
            await api.gateway.exchange.refresh()
        assert await api.gateway.exchange.rate_for() == 0.92
        warnings = [r for r in caplog.records if r.name == "gateway.exchange"]
        assert warnings and getattr(warnings[0], "reason", "")
        # a stored rate of a recent day stands in for the day's rate
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        await api.gateway.db.execute_write(
            "INSERT INTO exchange_rates VALUES (?, 'USD', 0.9, 'ecb:x', '2025-01-01T00:00:00Z')",
            (yesterday,),
        )
        assert await api.gateway.exchange.rate_for() == 0.9


async def test_an_unreachable_feed_falls_back_and_logs(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.sandbox.server import free_port

    url = f"http://127.0.0.1:{free_port()}/eurofxref-daily.xml"  # nothing listens there
    async with running_api(make_settings(EXCHANGE_RATE_URL=url)) as api:
        with caplog.at_level(logging.WARNING, logger="gateway.exchange"):
            assert await api.gateway.exchange.refresh() is True
        assert await api.gateway.exchange.rate_for() == 0.92
        reasons = [getattr(r, "reason", "") for r in caplog.records if r.name == "gateway.exchange"]
        assert any("could not fetch" in reason for reason in reasons)
        # tried again only after a while, not at every refresh
        assert await api.gateway.exchange.refresh() is False


async def test_one_fetch_a_day_across_two_gateways_on_one_database(
    make_settings: Callable[..., Settings], served: tuple[Feed, str]
) -> None:
    state, url = served
    settings = make_settings(EXCHANGE_RATE_URL=url)
    async with running_api(settings) as a, running_api(settings) as b:
        fetched = await asyncio.gather(
            *(gateway.exchange.refresh() for gateway in (a.gateway, b.gateway) for _ in range(3))
        )
        assert sum(fetched) == 1 and state.hits == 1
        expected = round(1 / 1.1625, 6)
        assert (
            await a.gateway.exchange.rate_for() == await b.gateway.exchange.rate_for() == expected
        )


async def sms_message(api: Api) -> tuple[dict[str, str], str]:
    _, key = await api.create_tenant("acme")
    await api.client.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    sent = await api.client.post(
        "/api/channels/sms/send", json={"to": "+33612345678", "body": "hi"}, headers=key
    )
    assert sent.status_code == 202, sent.text
    return key, sent.json()["id"]


async def test_a_message_priced_today_uses_the_stored_rate_of_the_day(
    make_settings: Callable[..., Settings], served: tuple[Feed, str]
) -> None:
    state, url = served
    state.body = ecb_feed.feed_document(rates={"USD": "1.25"})  # 0.8 EUR per USD
    async with running_api(make_settings(EXCHANGE_RATE_URL=url, **TWILIO)) as api:
        key, message_id = await sms_message(api)
        await api.gateway.exchange.refresh()
        report = StatusReport(
            "delivered",
            "delivered",
            "telnyx",
            {},
            message_id=message_id,
            price="0.05",
            price_unit="USD",
        )
        await api.gateway.inbound.apply_status(report)
        message = (await api.client.get(f"/api/messages/{message_id}", headers=key)).json()
        assert message["exchange_rate_usd_eur"] == 0.8
        assert message["provider_cost"] == 0.04  # 0.05 USD at 0.8, not at USD_EUR_RATE 0.92
        day = datetime.now(UTC).date()
        period = {"start": f"{day}T00:00:00Z", "end": f"{day + timedelta(days=1)}T00:00:00Z"}
        metrics = await api.client.get("/api/metrics/messages", params=period, headers=key)
        assert metrics.json()["current_period"]["total_cost"] == 0.04


async def test_the_sandbox_feed_works_with_the_fetcher(
    make_settings: Callable[..., Settings],
) -> None:
    with ServerThread(ecb_feed.feed_app()) as server:
        url = f"{server.base_url}{ecb_feed.FEED_PATH}"
        async with running_api(make_settings(EXCHANGE_RATE_URL=url)) as api:
            assert await api.gateway.exchange.refresh() is True
            assert await api.gateway.exchange.rate_for() == round(1 / 1.085, 6)
            row = await api.gateway.db.fetchone("SELECT source FROM exchange_rates")
            assert row["source"] == f"ecb:{today()}"
