"""Keyset pages and their cursors.

A page's `next_cursor` is opaque to clients: the sort keys of the last row shown (its id,
or its time and id), as URL-safe base64 of a JSON array. `newest_first` pages a tenant's
rows by id: ids are time-ordered ULIDs, so the last id is the whole key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, Literal, overload

from gateway.errors import ValidationFailed
from gateway.store.engine import Row
from gateway.store.tenant_scope import TenantDB

# Cursors issued before there was one format: a bare id (pages by id) and the base64 of
# "starts_at|id" (appointments). A client may still hold one mid-pagination.
_BARE_ID = re.compile(r"[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}")


def encode_cursor(*keys: str) -> str:
    """The `next_cursor` after a row whose sort keys are `keys`."""
    return base64.urlsafe_b64encode(json.dumps(list(keys)).encode()).decode().rstrip("=")


@overload
def decode_cursor(cursor: str, keys: Literal[1]) -> tuple[str]: ...
@overload
def decode_cursor(cursor: str, keys: Literal[2]) -> tuple[str, str]: ...
def decode_cursor(cursor: str, keys: int) -> tuple[str, ...]:
    """The `keys` sort keys a cursor of `encode_cursor` holds; a 422 naming `cursor` for
    anything this API did not hand out."""
    if keys == 1 and _BARE_ID.fullmatch(cursor):
        return (cursor,)
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        # the pipe-joined form is the appointments' older one
        value = json.loads(text) if text.startswith("[") else keys == 2 and text.split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = None
    if (
        isinstance(value, list)
        and len(value) == keys
        and all(isinstance(key, str) and key for key in value)
    ):
        return tuple(value)
    raise ValidationFailed.one("cursor", "is not a cursor this API returned")


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
) -> list[Row]:
    """`equal` maps column → value (None: no filter); since/until bound created_at [ , );
    `cursor` is the `next_cursor` of the page before: `encode_cursor(last id)`."""
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
        (params["cursor"],) = decode_cursor(cursor, 1)
    return await tdb.fetchall(
        f"SELECT {columns} FROM {table} WHERE {' AND '.join(clauses)} "
        "ORDER BY id DESC LIMIT :limit",
        params,
    )
