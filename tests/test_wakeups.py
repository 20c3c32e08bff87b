"""Instances wake each other for new work (issue 11 §3): a write that `announce`s is heard,
at its commit, by every engine subscribed on the database — a message accepted by one
instance is sent at once by another instance's dispatcher, without waiting for its poll —
and a listener whose connection is killed comes back and hears again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import psycopg
import pytest

from gateway.config import Settings
from gateway.db import Database
from gateway.sandbox.twilio_api import TwilioSandbox
from gateway.store.engine import Connection, announce
from gateway.store.postgres import PostgresEngine
from gateway.store.postgres_listener import APPLICATION_NAME
from tests.conftest import TWILIO, running_api
from tests.stack import eventually, running_stack

CHANNEL = "test_wakeups"


class Heard:
    """Counts the callbacks, from whatever thread they come."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __call__(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    async def reaches(self, count: int) -> None:
        await eventually(lambda: self.count >= count)


@pytest.fixture
async def two_engines(postgres_url: str) -> AsyncIterator[tuple[PostgresEngine, PostgresEngine]]:
    listening, writing = PostgresEngine(postgres_url), PostgresEngine(postgres_url)
    listening.start()
    writing.start()
    try:
        yield listening, writing
    finally:
        await listening.close()
        await writing.close()


def _announce(conn: Connection) -> None:
    announce(conn, CHANNEL)


def _announce_then_fail(conn: Connection) -> None:
    announce(conn, CHANNEL)
    raise RuntimeError("rolled back")


async def test_an_announcement_is_heard_at_commit_and_not_for_a_rollback(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    listening, writing = two_engines
    heard = Heard()
    listening.subscribe(CHANNEL, heard)
    await heard.reaches(1)  # listening: once at connect, for what was announced before
    with pytest.raises(RuntimeError):
        await writing.write_fn(_announce_then_fail)
    await writing.write_fn(_announce)
    await heard.reaches(2)
    await writing.write_fn(_announce)
    await heard.reaches(3)
    await asyncio.sleep(0.2)
    assert heard.count == 3  # the rolled-back write was never heard


async def test_the_listener_reconnects_after_its_backend_is_killed(
    two_engines: tuple[PostgresEngine, PostgresEngine], postgres_url: str
) -> None:
    listening, writing = two_engines
    heard = Heard()
    listening.subscribe(CHANNEL, heard)
    await heard.reaches(1)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        ).fetchall()
    assert len(killed) == 1
    await heard.reaches(2)  # back: called once on reconnecting
    await writing.write_fn(_announce)
    await heard.reaches(3)


async def test_sqlite_announces_nothing_and_subscribing_is_harmless(tmp_path: Path) -> None:
    db = Database(tmp_path / "one.sqlite3")
    db.start()
    heard = Heard()
    try:
        db.subscribe(CHANNEL, heard)
        await db.write_fn(_announce)
    finally:
        await db.close()
    assert heard.count == 0


def sent(twilio: TwilioSandbox, count: int) -> bool:
    return len(twilio.messages) >= count


async def test_a_message_accepted_by_one_instance_is_sent_at_once_by_another(
    tmp_path: Path, postgres_url: str, make_settings: Callable[..., Settings]
) -> None:
    # B alone dispatches, and would look for due messages only once a minute on its own
    with running_stack(
        tmp_path, DATABASE_URL=postgres_url, DISPATCH_POLL_SECONDS="60"
    ) as instance_b:
        settings_a = make_settings(**TWILIO, DATABASE_URL=postgres_url, DISPATCHER="off")
        async with running_api(settings_a) as instance_a:
            _, key = await instance_a.create_tenant("acme")
            on = await instance_a.client.post(
                "/api/channels/sms/toggle", json={"enabled": True}, headers=key
            )
            assert on.status_code == 200, on.text
            for n in (1, 2):
                accepted = await instance_a.client.post(
                    "/api/channels/sms/send",
                    json={"to": "+33612345678", "body": f"message {n}"},
                    headers=key,
                )
                assert accepted.status_code == 202, accepted.text
                await eventually(partial(sent, instance_b.twilio, n), within=10)
    assert [m["body"] for m in instance_b.twilio.messages] == ["message 1", "message 2"]
