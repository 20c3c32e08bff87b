"""schemathesis hooks for bench.fuzz_api (loaded through SCHEMATHESIS_HOOKS).

hypothesis draws `date-time` and `date` strings from ordinary years in UTC, so a run never
tries the values that broke date arithmetic (year 1 at +14:00, year 9999 at -14:00). Here
they come from the whole range Python writes, with offsets up to ±14:00, the edges often,
and ordinary dates still, so valid requests keep reaching the handlers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

_OFFSETS = st.sampled_from(
    [timezone(timedelta(hours=h)) for h in (-14, -12, -5, -1, 0, 1, 2, 12, 14)]
)
_EDGE_INSTANTS = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:00+00:00",
]
_EDGE_DAYS = ["0001-01-01", "9999-12-31", "1969-12-31", "3000-01-01"]

instants = st.one_of(
    st.sampled_from(_EDGE_INSTANTS),
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31), timezones=_OFFSETS).map(
        datetime.isoformat
    ),
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=_OFFSETS).map(
        datetime.isoformat
    ),
)
days = st.one_of(
    st.sampled_from(_EDGE_DAYS),
    st.dates(date(1, 1, 1), date(9999, 12, 31)).map(date.isoformat),
    st.dates(date(2020, 1, 1), date(2030, 12, 31)).map(date.isoformat),
)

schemathesis.openapi.format("date-time", instants)
schemathesis.openapi.format("date", days)
