"""Several small write functions in one engine write: what the dispatcher records after each
send ("sent", its event) arrives hundreds of times a second, and one write transaction per
message costs a queue hop, a savepoint and a wake-up each (on PostgreSQL a transaction and
a round trip each). `BatchedWrites.write(fn)` behaves as `engine.write_fn(fn)` — it returns
`fn`'s result once committed, or raises its error — but the functions queued while a batch
is being written go together in the next one.

A function that raises out of a batch rolls the whole batch back (nothing of it is
committed); each of its functions is then written on its own, so the failure stays that one
function's, as it would have been without batching. The functions must be safe to run again
(database work only, as every write function is: the PostgreSQL engine replays them too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from gateway.store.engine import Connection, Engine

T = TypeVar("T")
_Queued = tuple[Callable[[Connection], Any], "asyncio.Future[Any]"]

# the most functions in one transaction: a batch stays a short write
BATCH_LIMIT = 64


class BatchedWrites:
    def __init__(self, db: Engine, limit: int = BATCH_LIMIT) -> None:
        self.db = db
        self.limit = limit
        self._pending: list[_Queued] = []
        self._flushing: asyncio.Task[None] | None = None
        self.batches = 0  # how many engine writes the batches took (what a test reads)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="batched-writes")
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # the writes queued in this turn of the loop join
            while self._pending:
                batch, self._pending = self._pending[: self.limit], self._pending[self.limit :]
                await self._write(batch)
        finally:
            self._flushing = None

    async def _write(self, batch: list[_Queued]) -> None:
        functions = [fn for fn, _ in batch]

        def together(conn: Connection) -> list[Any]:
            return [fn(conn) for fn in functions]

        self.batches += 1
        try:
            results = await self.db.write_fn(together)
        except Exception:
            # one of them failed: nothing was committed; each on its own now
            await asyncio.gather(*(self._alone(fn, future) for fn, future in batch))
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _alone(self, fn: Callable[[Connection], Any], future: asyncio.Future[Any]) -> None:
        try:
            result = await self.db.write_fn(fn)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
