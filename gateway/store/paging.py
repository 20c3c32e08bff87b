"""One page of a tenant's rows, newest first: ids are time-ordered ULIDs, so the cursor is
the last id of the previous page."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from gateway.db import TenantDB


async def newest_first(
    tdb: TenantDB,
    table: str,
    equal: Mapping[str, Any],
    limit: int,
    cursor: str | None,
    *,
    columns: str = "*",
    since: str | None = None,
    until: str | None = None,
) -> list[sqlite3.Row]:
    """`equal` maps column → value (None: no filter); since/until bound created_at [ , )."""
    clauses = ["tenant_id = :tenant_id"]
    params: dict[str, Any] = {"limit": limit}
    for n, (column, value) in enumerate(equal.items()):
        if value is not None:
            clauses.append(f"{column} = :f{n}")
            params[f"f{n}"] = value
    for bound, op, value in (("since", ">=", since), ("until", "<", until)):
        if value:
            clauses.append(f"created_at {op} :{bound}")
            params[bound] = value
    if cursor:
        clauses.append("id < :cursor")
        params["cursor"] = cursor
    return await tdb.fetchall(
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(clauses)} "
        "ORDER BY id DESC LIMIT :limit",
        params,
    )
