"""Migration files in wrangler's D1 convention (`NNNN_name.sql`, applied in order), shared by
the SQLite runner (`gateway.migrations`) and the PostgreSQL one
(`gateway.store.postgres_migrations`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^\d{4}_[A-Za-z0-9_-]+\.sql$")


class MigrationError(Exception):
    def __init__(self, name: str, cause: str) -> None:
        super().__init__(f"migration {name} failed: {cause}")
        self.name = name


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path


def discover(directory: Path) -> list[Migration]:
    files = sorted(p for p in directory.glob("*.sql") if _NAME.match(p.name))
    return [Migration(p.name, p) for p in files]
