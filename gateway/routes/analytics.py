"""(stub: being written)"""

from __future__ import annotations

from gateway.routing import Endpoint

ENDPOINTS: list[Endpoint] = []
