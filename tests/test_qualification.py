from __future__ import annotations

import pytest

from gateway.services.qualification import ProspectIn, score


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 0),
        ({"timeline": "immediately"}, 30),
        ({"project": "buy", "property_type": "apartment", "location": "Lyon"}, 35),
        ({"budget": 200_000}, 15),
        ({"budget": 250_000}, 25),
        ({"phone": "+33612345678"}, 10),
        (
            {
                "project": "buy",
                "property_type": "house",
                "location": "Nantes",
                "budget": 400_000,
                "timeline": "within_3_months",
                "email": "a@example.com",
            },
            95,
        ),
        (
            {
                "project": "sell",
                "property_type": "house",
                "location": "Nantes",
                "budget": 900_000,
                "timeline": "immediately",
                "phone": "+33612345678",
            },
            100,
        ),
    ],
)
def test_score_rule(fields: dict[str, object], expected: int) -> None:
    assert score(ProspectIn.model_validate(fields)) == expected
