"""The `/_sandbox/` control endpoints' small vocabulary, shared by every emulator: reading a
JSON object, answering a bad request, a fault request, typed settings, and a lifespan that
closes the emulator's clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object, or an empty one for anything else."""
    try:
        payload = await request.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def bad_request(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


def is_setting(value: object, kind: type) -> bool:
    """Whether a JSON value fits a setting of type `kind`: bool; int or float, not negative;
    str, a text or null; dict, an object of texts (headers)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is str:
        return value is None or isinstance(value, str)
    if kind is dict:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    # JSON has one number type; a bool is an int in Python but never a valid number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value >= 0 and (kind is float or isinstance(value, int))


def apply_settings(target: object, kinds: Mapping[str, type], payload: Mapping[str, Any]) -> str:
    """Set every setting in `payload` on `target`, or none: the error, or "" when applied."""
    for name, value in payload.items():
        kind = kinds.get(name)
        if kind is None or not is_setting(value, kind):
            return f"bad setting {name!r}; known: {sorted(kinds)}"
    for name, value in payload.items():
        kind = kinds[name]
        setattr(target, name, kind(value) if kind in (bool, int, float) else value)
    return ""


def requested_fault(payload: Mapping[str, Any], kinds: frozenset[str]) -> tuple[str, int] | str:
    """The (kind, count) a `POST /_sandbox/faults` asks for, or why it is refused."""
    kind, count = payload.get("kind"), payload.get("count", 1)
    if kind not in kinds or isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return f"need {{'kind': one of {', '.join(sorted(kinds))}, 'count': positive int}}"
    return str(kind), count


def closing(
    aclose: Callable[[], Awaitable[None]],
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Starlette lifespan that runs `aclose` when the server stops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await aclose()

    return lifespan


async def hold(request: Request, seconds: float, current: Callable[[], bool]) -> None:
    """Hold the answer to `request` for `seconds` (a `hang` fault: what was asked is done,
    only the answer is late). Ends early once the client gave up or `current()` turns false
    (the emulator was reset), so a stopping server is not held for the whole delay."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0 and current():
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.02, remaining))
