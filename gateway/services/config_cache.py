"""What every send reads and almost nothing changes, kept in memory for a moment: an API
key with its tenant (`find_key`), and a tenant's channel state (settings and decrypted
secrets). Without it, each send makes two more database trips before its insert.

Freshness: an entry lives at most TTL_SECONDS. A change made through this process
(`changed`) empties the cache at once; on PostgreSQL it also tells every other instance
(NOTIFY on CONFIG_CHANGED, heard by each instance's listener), so a revoked key, a suspended
tenant or a disabled channel stops working everywhere within a second; TTL_SECONDS bounds
what no notification reaches (a CLI process on the SQLite file, a listener reconnecting).

A read that started before a change never stores its (possibly old) answer: each entry is
stored only if no change happened while it was read (the generation counter).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gateway.store import tenants as tenant_store
from gateway.store.engine import DatabaseError, Engine, Row, announce

CONFIG_CHANGED = "gateway_config_changed"
log = logging.getLogger("gateway.config_cache")
TTL_SECONDS = 0.5
# a bound on memory: past it, the cache starts over (keys of tenants that stopped sending)
MAX_ENTRIES = 10_000

K = TypeVar("K")
V = TypeVar("V")


class _Entries(Generic[K, V]):
    def __init__(self, owner: ConfigCache) -> None:
        self._owner = owner
        self._items: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        hit = self._items.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._owner.generation
        value = await load()
        if value is not None and generation == self._owner.generation:
            if len(self._items) >= MAX_ENTRIES:
                self._items.clear()
            self._items[key] = (now + TTL_SECONDS, value)
        return value

    def clear(self) -> None:
        self._items.clear()


class ConfigCache:
    """The cache of one engine (one database), shared by every service of this process."""

    def __init__(self) -> None:
        self.generation = 0
        self.keys: _Entries[str, Row | None] = _Entries(self)
        self.channels: _Entries[tuple[str, str], object] = _Entries(self)
        self._listening = False
        # key id -> when this process last wrote its last_used_at (newer than a cached row)
        self.touched: dict[str, str] = {}

    def forget(self) -> None:
        """Drop everything (called from the listener thread too: a counter bump and dict
        clears, each atomic under the GIL)."""
        self.generation += 1
        self.keys.clear()
        self.channels.clear()

    def listen(self, db: Engine) -> None:
        if not self._listening and db.dialect == "postgres":
            self._listening = True
            db.subscribe(CONFIG_CHANGED, self.forget)

    async def find_key(self, db: Engine, key_hash: str) -> Row | None:
        """The key's row joined with its tenant (`tenants.find_key`); unknown keys are not
        kept, so a key created a moment ago works at once."""
        self.listen(db)
        return await self.keys.get(key_hash, lambda: tenant_store.find_key(db, key_hash))


# a cache holds no reference to its engine: the entry goes when the engine does
_CACHES: weakref.WeakKeyDictionary[Engine, ConfigCache] = weakref.WeakKeyDictionary()


def cache_for(db: Engine) -> ConfigCache:
    cache = _CACHES.get(db)
    if cache is None:
        cache = _CACHES[db] = ConfigCache()
    return cache


async def changed(db: Engine) -> None:
    """After a committed change to a key, a tenant or a channel: forget here at once, and
    tell the other instances (PostgreSQL)."""
    cache_for(db).forget()
    if db.dialect == "postgres":
        try:
            await db.write_fn(lambda conn: announce(conn, CONFIG_CHANGED))
        except DatabaseError:
            # the change itself is committed: the other instances see it by TTL_SECONDS
            log.warning("could not tell the other instances of a configuration change")
