"""The fault switch every emulator shares: a queue of failures for the next requests."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class FaultQueue:
    """The next requests fail in the order their faults were added, one fault each."""

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = frozenset(kinds)
        self._queue: deque[str] = deque()

    def add(self, kind: str, count: int = 1) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(self.kinds)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._queue.extend([kind] * count)

    def take(self) -> str | None:
        return self._queue.popleft() if self._queue else None

    @property
    def pending(self) -> list[str]:
        return list(self._queue)

    def clear(self) -> None:
        self._queue.clear()
