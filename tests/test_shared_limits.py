"""Send rate limits and per-sender pacing are shared by every instance on one PostgreSQL
database (issue 11 §3); on SQLite (one process per file) they stay in memory.

"Two instances" here are two gateway apps, or two engines, on one database: what two
processes on two machines share is the database and nothing else."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.config import RateLimit, Settings, load_settings
from gateway.db import Database
from gateway.errors import RateLimited
from gateway.migrations import apply_migrations
from gateway.services import pacing
from gateway.services.pacing import Pacer, SharedPacer, pacer_for
from gateway.services.ratelimit import SharedBuckets, TokenBuckets, buckets_for, take_all
from gateway.store.engine import Engine
from gateway.store.postgres import PostgresEngine
from tests.conftest import ADMIN_KEY, KEY_A, TWILIO, Api, start_api

ROOT = Path(__file__).resolve().parents[1]
CLIENT = "+33612345678"
# a period long enough that no token comes back while a test runs
HOUR = 3600


def limited_settings(tmp_path: Path, limit: int, **environ: str) -> Settings:
    """Settings whose send limit is `limit` an hour, on the database `environ` names (the
    SQLite file in tmp_path when it names none)."""
    toml = tmp_path / "limited.toml"
    toml.write_text(
        '[[ratelimits]]\nname = "SEND_RATE_LIMITER"\nnamespace_id = "1"\n'
        f"simple = {{ limit = {limit}, period = {HOUR} }}\n"
    )
    return load_settings(
        toml,
        environ={
            "ADMIN_API_KEY": ADMIN_KEY,
            "ENCRYPTION_KEYS": f"k1:{KEY_A}",
            "DATABASE_PATH": str(tmp_path / "gateway.sqlite3"),
            "DISPATCHER": "off",
            **TWILIO,
            **environ,
        },
    )


@asynccontextmanager
async def instances(settings: Settings, count: int = 2) -> AsyncIterator[list[Api]]:
    """`count` gateway apps on the database of `settings`, stopped afterwards."""
    started: list[Api] = []
    try:
        for _ in range(count):
            started.append(Api(*await start_api(settings)))
        yield started
    finally:
        for api in started:
            await api.client.aclose()
            await api.gateway.stop()


async def sms_tenant(api: Api, slug: str) -> dict[str, str]:
    _, key = await api.create_tenant(slug)
    toggled = await api.client.post("/api/channels/sms/toggle", json={"enabled": True}, headers=key)
    assert toggled.status_code == 200, toggled.text
    return key


async def send(api: Api, key: dict[str, str]) -> Any:
    return await api.client.post(
        "/api/channels/sms/send", json={"to": CLIENT, "body": "hi"}, headers=key
    )


async def logged(api: Api) -> int:
    row = await api.gateway.db.fetchone("SELECT COUNT(*) AS n FROM channel_messages_log")
    return int(row["n"])


# -- the send endpoints, two gateways on one database ----------------------------------------


async def test_two_gateways_on_one_postgres_share_a_tenants_send_limit(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = limited_settings(tmp_path, 3, DATABASE_URL=postgres_url)
    async with instances(settings) as (first, second):
        key = await sms_tenant(first, "acme")
        other = await sms_tenant(first, "other")
        answers = [await send(api, key) for api in (first, second) * 3]
        assert [a.status_code for a in answers] == [202, 202, 202, 429, 429, 429]
        for refused in answers[3:]:
            assert refused.json()["error"]["code"] == "rate_limited"
            assert int(refused.headers["retry-after"]) >= 1
        assert await logged(first) == 3, "3 accepted in total, not 3 per instance"
        theirs = await send(second, other)
        assert theirs.status_code == 202, "each tenant has its own budget"
        assert all(isinstance(api.gateway.dispatcher.pacer, SharedPacer) for api in (first, second))


async def test_sqlite_keeps_its_limits_in_the_process(tmp_path: Path) -> None:
    async with instances(limited_settings(tmp_path, 2), count=1) as (api,):
        key = await sms_tenant(api, "acme")
        assert [(await send(api, key)).status_code for _ in range(3)] == [202, 202, 429]
        assert isinstance(api.gateway.send_limiter, TokenBuckets)
        assert isinstance(api.gateway.dispatcher.pacer, Pacer)
        rows = await api.gateway.db.fetchone("SELECT COUNT(*) AS n FROM rate_buckets")
        assert rows["n"] == 0, "no database trip on the embedded hot path"


# -- the limits themselves, on two engines ----------------------------------------------------


@pytest.fixture
async def two_engines(postgres_url: str) -> AsyncIterator[tuple[PostgresEngine, PostgresEngine]]:
    """Two instances' engines on one database, each with several write connections."""
    engines = (
        PostgresEngine(postgres_url, write_connections=4, read_connections=1),
        PostgresEngine(postgres_url, write_connections=4, read_connections=1),
    )
    for db in engines:
        db.start()
    try:
        yield engines
    finally:
        for db in engines:
            await db.close()


@asynccontextmanager
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "limits.sqlite3"
    apply_migrations(path, ROOT / "database" / "migrations")
    db = Database(path, read_connections=1)
    db.start()
    try:
        yield db
    finally:
        await db.close()


def rule(name: str, limit: int) -> RateLimit:
    return RateLimit(name, "", limit=limit, period=HOUR)


async def allowed(check: Callable[[], Any]) -> bool:
    try:
        await check()
    except RateLimited:
        return False
    return True


async def test_concurrent_takes_from_two_instances_grant_the_limit_once(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    limits = [SharedBuckets(rule("SEND_RATE_LIMITER", 7), db) for db in two_engines]
    outcomes = await asyncio.gather(
        *(allowed(lambda b=limits[i % 2]: b.check("tenant-1")) for i in range(40))
    )
    assert outcomes.count(True) == 7


async def test_a_request_refused_by_one_shared_limit_uses_up_no_other(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    (tests_a, sends_a), (tests_b, sends_b) = (
        (
            SharedBuckets(rule("CHANNEL_TEST_RATE_LIMITER", 1), db, "channel tests"),
            SharedBuckets(rule("SEND_RATE_LIMITER", 2), db),
        )
        for db in two_engines
    )
    await take_all([(tests_a, "t1:sms"), (sends_a, "t1")])
    with pytest.raises(RateLimited, match="channel tests") as refused:
        await take_all([(tests_b, "t1:sms"), (sends_b, "t1")])
    assert int(refused.value.headers["Retry-After"]) >= 1
    await sends_b.check("t1")  # the refused channel test left this token
    with pytest.raises(RateLimited, match="Too many requests"):
        await sends_a.check("t1")


async def test_opposite_claim_orders_from_two_instances_do_not_deadlock(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    first, second = (
        (SharedBuckets(rule("A", 10), db), SharedBuckets(rule("B", 100), db)) for db in two_engines
    )

    async def claim(i: int) -> bool:
        a, b = first if i % 2 else second
        claims = [(a, "k"), (b, "k")] if i % 4 < 2 else [(b, "k"), (a, "k")]
        return await allowed(lambda: take_all(claims))

    outcomes = await asyncio.gather(*(claim(i) for i in range(40)))
    assert outcomes.count(True) == 10
    rows = await two_engines[0].fetchall("SELECT name, tokens FROM rate_buckets ORDER BY name")
    tokens = {row["name"]: row["tokens"] for row in rows}
    assert tokens["A"] == pytest.approx(0, abs=0.5)
    assert tokens["B"] == pytest.approx(90, abs=0.5), "refused claims gave B's tokens back"


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_the_store_takes_all_or_nothing_on_both_engines(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The store's SQL runs on both engines (the gateway uses it on PostgreSQL only)."""
    async with _engine(engine, tmp_path, request) as db:
        tests_limit, sends = (
            SharedBuckets(rule("T", 1), db, "channel tests"),
            SharedBuckets(rule("S", 2), db),
        )
        await take_all([(tests_limit, "x"), (sends, "x")])
        with pytest.raises(RateLimited, match="channel tests"):
            await take_all([(tests_limit, "x"), (sends, "x")])
        await sends.check("x")
        with pytest.raises(RateLimited):
            await sends.check("x")


@asynccontextmanager
async def _engine(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Engine]:
    if engine == "sqlite":
        async with sqlite_engine(tmp_path) as db:
            yield db
        return
    db = PostgresEngine(request.getfixturevalue("postgres_url"), read_connections=1)
    db.start()
    try:
        yield db
    finally:
        await db.close()


async def test_idle_buckets_are_swept_and_their_keys_start_full(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    db = two_engines[0]
    limit = SharedBuckets(rule("SEND_RATE_LIMITER", 2), db)
    for key in ("idle", "busy", "idle", "busy"):
        await limit.check(key)
    # an hour and more later for `idle`: refilled, so its row means the same as no row
    await db.execute_write(
        "UPDATE rate_buckets SET stamp = stamp - 7200, full_at = full_at - 7200 WHERE key = 'idle'"
    )
    assert await limit.sweep() == 1
    rows = await db.fetchall("SELECT key FROM rate_buckets")
    assert [row["key"] for row in rows] == ["busy"]
    assert [await allowed(lambda: limit.check("idle")) for _ in range(3)] == [True, True, False]
    assert not await allowed(lambda: limit.check("busy")), "a busy bucket is kept"


def test_the_limits_live_where_the_engine_says() -> None:
    class Sqlite:
        dialect = "sqlite"

    class Postgres:
        dialect = "postgres"

    send = rule("SEND_RATE_LIMITER", 5)
    assert isinstance(buckets_for(Sqlite(), send), TokenBuckets)  # type: ignore[arg-type]
    assert isinstance(buckets_for(Postgres(), send), SharedBuckets)  # type: ignore[arg-type]
    assert isinstance(pacer_for(Sqlite(), 2.0), Pacer)  # type: ignore[arg-type]
    assert isinstance(pacer_for(Postgres(), 2.0), SharedPacer)  # type: ignore[arg-type]
    assert isinstance(pacer_for(Postgres(), 0.0), Pacer), "pacing off: no database trip"  # type: ignore[arg-type]


# -- pacing ---------------------------------------------------------------------------------


async def test_two_pacers_on_one_database_space_one_senders_slots_by_the_interval(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    interval = 100.0  # seconds: slots taken within a test are back to back
    first, second = (SharedPacer(db, rate=1 / interval) for db in two_engines)
    taken = [await pacer.slot("+33939035761") for pacer in (first, second) * 3]
    slots = [slot for slot, _ in taken]
    assert [b - a for a, b in itertools.pairwise(slots)] == pytest.approx([interval] * 5, abs=1e-3)
    delays = [delay for _, delay in taken]
    assert delays[0] < 1 and delays[-1] == pytest.approx(5 * interval, abs=1)
    _, other_delay = await second.slot("+33939035762")
    assert other_delay < 1, "another sender has its own slots"


async def test_concurrent_pacing_from_two_instances_hands_out_distinct_slots(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    pacers = [SharedPacer(db, rate=0.1) for db in two_engines]
    taken = await asyncio.gather(*(pacers[i % 2].slot("sender") for i in range(20)))
    slots = sorted(slot for slot, _ in taken)
    assert [b - a for a, b in itertools.pairwise(slots)] == pytest.approx([10.0] * 19, abs=1e-3)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """What the pacers ask to sleep, instead of sleeping."""
    asked: list[float] = []

    async def sleep(delay: float) -> None:
        asked.append(delay)

    monkeypatch.setattr(pacing.asyncio, "sleep", sleep)
    yield asked


async def test_a_shared_pacer_waits_for_its_slot(
    two_engines: tuple[PostgresEngine, PostgresEngine], sleeps: list[float]
) -> None:
    first, second = (SharedPacer(db, rate=0.5) for db in two_engines)
    await first.wait("sender")
    await second.wait("sender")
    await first.wait("sender")
    assert sleeps == [pytest.approx(2.0, abs=0.5), pytest.approx(4.0, abs=0.5)]


async def test_passed_slots_are_swept(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    db = two_engines[0]
    pacer = SharedPacer(db, rate=0.01)
    await pacer.slot("old")
    await pacer.slot("new")
    await db.execute_write(
        "UPDATE pacing_slots SET next_slot = next_slot - 7200 WHERE sender = 'old'"
    )
    assert await pacer.sweep() == 1
    rows = await db.fetchall("SELECT sender FROM pacing_slots")
    assert [row["sender"] for row in rows] == ["new"]
    _, delay = await pacer.slot("old")
    assert delay < 1
