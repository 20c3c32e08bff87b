"""The channels hub (`/console/`): the four channels with their state and what is missing,
from the service behind `GET /api/channels` (one query for the four)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from gateway.console.render import render
from gateway.console.session import require_console

if TYPE_CHECKING:
    from gateway.wiring import Gateway


async def hub(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    user = await require_console(request, gw)
    channels = await gw.channels.list(user.db)
    return render(request, "hub.html", {"channels": channels})
