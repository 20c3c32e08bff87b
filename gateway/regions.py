"""The country a tenant's national-format phone numbers are read in ("06 12 34 56 78" is
+33612345678 for a tenant in France): the tenant's explicit `country`, else the country of
its IANA time zone as the tz database's `zone.tab` records it."""

from __future__ import annotations

import functools
import zoneinfo
from pathlib import Path
from typing import Protocol


class HasRegion(Protocol):
    @property
    def country(self) -> str | None: ...

    @property
    def timezone(self) -> str: ...


@functools.cache
def _zone_countries() -> dict[str, str]:
    for folder in zoneinfo.TZPATH:
        table = Path(folder) / "zone.tab"
        if not table.is_file():
            continue
        countries: dict[str, str] = {}
        for line in table.read_text(encoding="utf-8").splitlines():
            if line.startswith("#") or not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) >= 3:
                countries[fields[2]] = fields[0]
        return countries
    return {}


def region_for_timezone(timezone: str | None) -> str | None:
    """ISO 3166-1 alpha-2 of the country a time zone belongs to, None when unknown (UTC)."""
    if not timezone:
        return None
    return _zone_countries().get(timezone)


def tenant_region(tenant: HasRegion) -> str | None:
    return tenant.country or region_for_timezone(tenant.timezone)
