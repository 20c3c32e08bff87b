"""Which provider message, if any, is ours: the decision behind a send whose answer was lost
(no I/O here; the dispatcher gathers the facts).

A provider cannot tell apart two messages with the same recipient, sender and text — two
tenants on the shared number sending the same code, or one tenant twice. Such unsettled
messages are *twins*. A provider message can be a twin's only if the provider created it
while that twin's send attempt was on its way: from the attempt's start to its deadline,
widened by `skew` for clocks that differ and Twilio's whole-second timestamps.

The decision for one twin, the same whichever twin computes it:
- a twin whose send is still in flight elsewhere could own any candidate: decide later;
- otherwise twins (in attempt order) each take the earliest candidate they could own that
  no earlier twin took — one provider message for at most one of ours;
- a twin left without one while no candidate at all fell in its window was proven never to
  have reached the provider: it is sent;
- a twin left without one while candidates fell in its window, all taken by twins, is
  ambiguous: it is never resolved by sending again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from gateway.providers.base import ProviderMessage


@dataclass(frozen=True)
class Twin:
    id: str
    attempted: datetime
    in_flight: bool


@dataclass(frozen=True)
class Decision:
    action: Literal["adopt", "send", "ambiguous", "later"]
    match: ProviderMessage | None = None


def _window(twin: Twin, deadline: timedelta, skew: timedelta) -> tuple[datetime, datetime]:
    return twin.attempted - skew, twin.attempted + deadline + skew


def decide(
    subject: str,
    twins: list[Twin],
    candidates: list[ProviderMessage],
    *,
    deadline: timedelta,
    skew: timedelta,
) -> Decision:
    """The decision for twin `subject` (one of `twins`); `candidates` are the provider's
    messages with the twins' text that no message of ours holds yet."""
    if any(t.in_flight for t in twins if t.id != subject):
        return Decision("later")
    dated = sorted(
        (c for c in candidates if c.created is not None),
        key=lambda c: (c.created, c.provider_message_id),
    )
    taken: set[str] = set()
    mine: ProviderMessage | None = None
    in_window = False
    for twin in sorted(twins, key=lambda t: (t.attempted, t.id)):
        low, high = _window(twin, deadline, skew)
        fitting = [c for c in dated if c.created is not None and low <= c.created <= high]
        free = next((c for c in fitting if c.provider_message_id not in taken), None)
        if free is not None:
            taken.add(free.provider_message_id)
        if twin.id == subject:
            mine, in_window = free, bool(fitting)
            break
    if mine is not None:
        return Decision("adopt", mine)
    return Decision("ambiguous" if in_window else "send")
