from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.services.cron import Cron

MONDAY_0930 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        ("* * * * *", MONDAY_0930, True),
        ("*/15 * * * *", MONDAY_0930, True),
        ("*/20 * * * *", MONDAY_0930, False),
        ("30 9 * * 1", MONDAY_0930, True),
        ("30 9 * * 1-5", MONDAY_0930, True),
        ("30 9 * * 0,6", MONDAY_0930, False),
        ("30 9 * * 7", datetime(2026, 11, 22, 9, 30, tzinfo=UTC), True),  # Sunday
        ("0 8-18/2 * * *", datetime(2026, 11, 23, 10, 0, tzinfo=UTC), True),
        ("0 8-18/2 * * *", datetime(2026, 11, 23, 11, 0, tzinfo=UTC), False),
        ("30 9 1 * 1", MONDAY_0930, True),  # day or weekday when both are restricted
        ("30 9 23 12 *", MONDAY_0930, False),
    ],
)
def test_cron_matching(expression: str, moment: datetime, expected: bool) -> None:
    assert Cron(expression).matches(moment) is expected


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * *", "*/0 * * * *", "a * * * *"])
def test_bad_cron_is_rejected(expression: str) -> None:
    with pytest.raises(ValueError):
        Cron(expression)
