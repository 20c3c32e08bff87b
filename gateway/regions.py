"""The country a tenant's national-format phone numbers are read in ("06 12 34 56 78" is
+33612345678 for a tenant in France): the tenant's explicit `country`, else the country of
its IANA time zone as the tz database's `zone.tab` records it (a zone's other names, such as
Asia/Calcutta or US/Eastern, are followed to the zone through `tzdata.zi`'s links)."""

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
        for link, target in _links(Path(folder) / "tzdata.zi").items():
            if target in countries:
                countries.setdefault(link, countries[target])
        return countries
    return {}


def _links(compiled: Path) -> dict[str, str]:
    """`L <zone> <other name>` lines of the compiled tz source: other name -> zone."""
    if not compiled.is_file():
        return {}
    links: dict[str, str] = {}
    for line in compiled.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "L":
            links[fields[2]] = fields[1]
    return links


def region_for_timezone(timezone: str | None) -> str | None:
    """ISO 3166-1 alpha-2 of the country a time zone belongs to, None when unknown (UTC)."""
    if not timezone:
        return None
    return _zone_countries().get(timezone)


def tenant_region(tenant: HasRegion) -> str | None:
    return tenant.country or region_for_timezone(tenant.timezone)
