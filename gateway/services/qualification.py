"""Real-estate prospect qualification: the score rule (0-100), stated in the README.

project given            +15      budget given                 +15
property type given      +10      budget >= 250,000 EUR        +10
location given           +10      a phone or email to call back +10
timeline: immediately +30, within_3_months +25, within_6_months +15,
          within_12_months +10, later +5, unknown +0
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.services.vapi_server import ToolArguments
from gateway.validation import E164, BodyText, EmailAddress, HeaderText

Line = Annotated[HeaderText, Field(max_length=200)]

Timeline = Literal[
    "immediately", "within_3_months", "within_6_months", "within_12_months", "later", "unknown"
]
TIMELINE_POINTS: dict[str, int] = {
    "immediately": 30,
    "within_3_months": 25,
    "within_6_months": 15,
    "within_12_months": 10,
    "later": 5,
    "unknown": 0,
}


class ProspectIn(ToolArguments):
    name: Line | None = None
    phone: E164 | None = None
    email: EmailAddress | None = None
    project: Literal["buy", "sell", "rent", "let", "invest"] | None = None
    property_type: Annotated[HeaderText, Field(max_length=100)] | None = None
    location: Line | None = None
    budget: Annotated[float, Field(ge=0, le=1e10)] | None = None
    timeline: Timeline = "unknown"
    notes: Annotated[BodyText, Field(max_length=2000)] | None = None


def score(prospect: ProspectIn) -> int:
    points = TIMELINE_POINTS[prospect.timeline]
    points += 15 if prospect.project else 0
    points += 10 if prospect.property_type else 0
    points += 10 if prospect.location else 0
    if prospect.budget:
        points += 15 + (10 if prospect.budget >= 250_000 else 0)
    points += 10 if (prospect.phone or prospect.email) else 0
    return min(points, 100)
