"""Ids: unique, sortable by time, and drawn from the kernel's randomness through a pool that
a forked child does not share with its parent."""

from __future__ import annotations

import os
import threading
import time

from gateway.ids import new_id, random_hex

_CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_ids_are_unique_across_many_pool_refills_and_threads() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_id("msg") for _ in range(5_000))  # 10 bytes each: a dozen refills

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [one for into in made for one in into]
    assert len(set(ids)) == len(ids) == 20_000
    assert all(one.startswith("msg_") and len(one) == 30 for one in ids)
    assert all(set(one[4:]) <= _CROCKFORD for one in ids)


def test_ids_sort_by_creation_time() -> None:
    first = new_id("evt")
    time.sleep(0.002)
    assert new_id("evt") > first


def test_random_hex_is_hex_of_the_asked_length_and_never_repeats() -> None:
    tokens = [random_hex(16) for _ in range(2_000)]
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)
    assert len(set(tokens)) == len(tokens)


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    new_id("msg")  # the parent's pool holds unused bytes when it forks
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent, then out without cleanup
        try:
            os.write(write_end, " ".join(new_id("msg") for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode().split()
    os.waitpid(pid, 0)
    parent = [new_id("msg") for _ in range(50)]
    assert len(child) == 50
    # the random parts differ (the time parts may well be equal)
    assert not {one[14:] for one in child} & {one[14:] for one in parent}
