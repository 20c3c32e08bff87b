"""GET /readyz when the database does not answer: 503 in the probe's own words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.store.engine import DatabaseError
from tests.conftest import Api


async def test_readiness_reports_an_unreachable_database(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreadable(fn: Callable[[Any], Any]) -> Any:
        raise DatabaseError("disk I/O error")  # what an engine raises for its driver's error

    monkeypatch.setattr(api.gateway.db, "read_fn", unreadable)
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable: disk I/O error"}
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
