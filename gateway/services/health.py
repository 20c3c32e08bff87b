"""Readiness: whether the database answers and its schema is current."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway import migrations
from gateway.config import Settings
from gateway.store.engine import DatabaseError, Engine


@dataclass(frozen=True)
class Readiness:
    database: str  # "ok", or "unreachable: <why>"
    pending_migrations: list[str] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.database == "ok"

    @property
    def ready(self) -> bool:
        return self.reachable and not self.pending_migrations


async def readiness(db: Engine, settings: Settings) -> Readiness:
    # read at each probe: the migrations folder is the one the settings name now
    directory, table = settings.migrations_dir, settings.migrations_table
    try:
        pending = await db.read_fn(lambda conn: migrations.pending(conn, directory, table))
    except DatabaseError as exc:
        return Readiness(f"unreachable: {exc}")
    return Readiness("ok", pending)
