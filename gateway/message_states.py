"""The one rule every status write obeys, for messages and for calls (no I/O here).

A message's status only moves up its ladder, whichever path writes it (the dispatcher, a
provider callback, a poll, a recovery after a crash). Final statuses share a rank, so the
first final one wins, except that WhatsApp's "read" may follow "delivered". The one way down
is the dispatcher's own: while a send is unfinished (queued or sending) the dispatcher may
move it between those two — claim, retry later, flag for reconciliation — but never once a
provider has taken it (the row then has a provider message id) and never from a status a
provider reported.

The store turns these sets into conditional `UPDATE … WHERE status IN (…)` statements, so
the rule holds inside the database transaction, not only in the process that read the row.
"""

from __future__ import annotations

import functools

MESSAGE_RANK = {
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "received": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "canceled": 3,
    "read": 4,
}
FINAL = frozenset({"delivered", "undelivered", "failed", "canceled", "read", "received"})
# the dispatcher's working states: it may move a message between them while it owns it
UNFINISHED = frozenset({"queued", "sending"})


def may_move(current: str, new: str) -> bool:
    """Whether a message at `current` may become `new`."""
    if current in UNFINISHED and new in UNFINISHED:
        return True
    return MESSAGE_RANK.get(new, -1) > MESSAGE_RANK.get(current, -1)


@functools.lru_cache(maxsize=128)
def sources(new: str, only_from: frozenset[str] | None = None) -> tuple[str, ...]:
    """The statuses a message may be in for a move to `new` to apply, optionally narrowed
    to `only_from` (the dispatcher acts only on the sends it owns)."""
    allowed = [s for s in MESSAGE_RANK if may_move(s, new)]
    if only_from is not None:
        allowed = [s for s in allowed if s in only_from]
    return tuple(allowed)


# Calls: Twilio's call statuses and Vapi's status-update statuses on one ladder. A call that
# ended stays ended whatever arrives late.
CALL_RANK = {
    "scheduled": 0,
    "queued": 0,
    "ringing": 0,
    "in-progress": 1,
    "forwarding": 1,
    "ended": 2,
    "completed": 2,
    "busy": 2,
    "failed": 2,
    "no-answer": 2,
    "canceled": 2,
}
CALL_FINAL = frozenset(s for s, rank in CALL_RANK.items() if rank == 2)


def call_sources(new: str) -> tuple[str, ...]:
    """The call statuses from which `new` may be written (an unknown status ranks lowest,
    so it never overwrites a known one, and is itself overwritten by any progress)."""
    rank = CALL_RANK.get(new)
    if rank is None:
        return ()
    return tuple(s for s, r in CALL_RANK.items() if r < rank)
