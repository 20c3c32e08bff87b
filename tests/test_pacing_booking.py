"""Pacing slots booked for a whole claim at once (gateway/services/pacing.py `book`): each
send of one sender gets its own slot, one interval after the one before, whether the slots
live in memory (SQLite) or in the database shared by instances (PostgreSQL), and a booking
continues where the sender's last slot — booked or taken one at a time — ended."""

from __future__ import annotations

import itertools
import time

import pytest

from gateway.services.pacing import Pacer, SharedPacer
from gateway.store.postgres import PostgresEngine
from tests.test_shared_limits import two_engines

__all__ = ["two_engines"]  # a fixture, used by name

INTERVAL = 100.0  # seconds: slots taken within a test are back to back


def _gaps(instants: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(instants)]


async def test_a_booking_spaces_each_senders_sends_by_the_interval_in_memory() -> None:
    pacer = Pacer(rate=1 / INTERVAL)
    before = time.monotonic()
    booked = await pacer.book(["a", "b", "a", "a"])
    a = [booked[0], booked[2], booked[3]]
    assert _gaps(a) == pytest.approx([INTERVAL, INTERVAL], abs=1e-3)
    assert booked[0] - before < 1 and booked[1] - before < 1, "each sender starts now"
    assert await pacer.reserve("a") == pytest.approx(3 * INTERVAL, abs=1)
    again = await pacer.book(["b"])
    assert again[0] - before == pytest.approx(INTERVAL, abs=1)


async def test_pacing_off_books_now() -> None:
    before = time.monotonic()
    booked = await Pacer(rate=0).book(["a"] * 5)
    assert all(instant - before < 1 for instant in booked)


async def test_two_instances_booking_one_senders_slots_never_share_one(
    two_engines: tuple[PostgresEngine, PostgresEngine],
) -> None:
    first, second = (SharedPacer(db, rate=1 / INTERVAL) for db in two_engines)
    before = time.monotonic()
    mine = await first.book(["+33939035761"] * 3 + ["+33939035762"])
    theirs = await second.book(["+33939035761"] * 2)
    assert _gaps(mine[:3]) == pytest.approx([INTERVAL, INTERVAL], abs=1e-2)
    assert mine[3] - before < 1, "another sender has its own slots"
    assert [t - before for t in theirs] == pytest.approx([3 * INTERVAL, 4 * INTERVAL], abs=1)
    _, delay = await first.slot("+33939035761")
    assert delay == pytest.approx(5 * INTERVAL, abs=1)
