"""What the SMS emulators (Twilio, Telnyx) share besides their wire: the messages behind a
lock, each one's walk through its statuses on the event loop, the switches that hold,
reorder or duplicate its delivery reports, the fault switch, a held answer (`hang`), and the
`/_sandbox/` endpoints that drive them over HTTP."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.sandbox.control import (
    apply_settings,
    bad_request,
    hold,
    json_object,
    requested_fault,
)
from gateway.sandbox.faults import FaultQueue

# The switches POST /_sandbox/settings takes, with their types.
SETTINGS: dict[str, type] = {
    "callback_delay": float,
    "reorder": bool,
    "duplicate": bool,
    "hang_seconds": float,
    "hang_every": int,
    "lookups_to_hang": int,
    "retry_after": int,
}


class Delivery(Protocol):
    """Posts delivery reports (status callbacks, webhooks) in the background."""

    def discard_pending(self) -> None: ...

    async def aclose(self) -> None: ...


class Tracked(Protocol):
    status: str
    history: list[str]
    held: list[Any] | None


M = TypeVar("M", bound=Tracked)


class SmsEmulator(Generic[M]):
    """Subclasses give a message's resource (`_resource`), its next step (`_advance`) and
    the faults their API knows (`fault_kinds`)."""

    fault_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, delivery: Delivery, callback_delay: float, max_messages: int) -> None:
        self.callback_delay = callback_delay
        self.max_messages = max_messages
        self.reorder = False
        self.duplicate = False
        self.hang_seconds = 30.0
        # every Nth message created gets its answer held like a `hang` fault (0: never)
        self.hang_every = 0
        # the next N message look-ups (lists, fetches) hold their answer like a send's hang
        self.lookups_to_hang = 0
        self.retry_after = 1
        self.create_requests = 0
        self._faults = FaultQueue(self.fault_kinds)
        self._delivery = delivery
        self._messages: dict[str, M] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def _resource(self, message: M) -> dict[str, Any]:
        raise NotImplementedError

    def _advance(self, message_id: str, generation: int) -> None:
        raise NotImplementedError

    # -- reading -------------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message created so far, oldest first, as the provider's API shows it."""
        with self._lock:
            return [self._resource(message) for message in self._messages.values()]

    def message(self, message_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._messages.get(message_id)
            return None if found is None else self._resource(found)

    def status_history(self, message_id: str) -> list[str]:
        with self._lock:
            found = self._messages.get(message_id)
            return [] if found is None else list(found.history)

    async def wait_for_status(
        self,
        message_id: str,
        status: str,
        timeout: float = 5.0,  # noqa: ASYNC109 - the state lives on another thread's loop
    ) -> dict[str, Any]:
        """Wait until the message has reached `status` (now or earlier); return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                found = self._messages.get(message_id)
                if found is not None and status in found.history:
                    return self._resource(found)
                current = None if found is None else found.status
            if loop.time() >= deadline:
                raise TimeoutError(f"message {message_id} is {current!r}, not {status!r}")
            await asyncio.sleep(0.005)

    # -- the life cycle ------------------------------------------------------------------------

    def _add(self, message_id: str, message: M) -> dict[str, Any]:
        """Store a new message, start its life cycle and return its resource; on the loop."""
        with self._lock:
            self._messages[message_id] = message
            if len(self._messages) > self.max_messages:
                del self._messages[next(iter(self._messages))]
            generation = self._generation
            resource = self._resource(message)
        self._next_step(message_id, generation)
        return resource

    def _next_step(self, message_id: str, generation: int) -> None:
        asyncio.get_running_loop().call_later(
            self.callback_delay, self._advance, message_id, generation
        )

    def _reports(self, message: M, report: dict[str, Any], final: bool) -> list[dict[str, Any]]:
        """The delivery reports to send now, `report` being the newest; under the lock."""
        if self.reorder or message.held:
            # Hold every report until the final one, then release them newest first.
            message.held = [*(message.held or []), report]
            if not final:
                return []
            batch = message.held[::-1] if self.reorder else message.held
            message.held = None
        else:
            batch = [report]
        if self.duplicate:
            batch = [item for item in batch for _ in range(2)]
        return batch

    def forget_messages(self) -> None:
        """Drop every message, its pending steps and the reports not yet sent."""
        with self._lock:
            self._generation += 1
            self._messages.clear()
        self._delivery.discard_pending()

    async def aclose(self) -> None:
        await self._delivery.aclose()

    # -- switches ------------------------------------------------------------------------------

    def add_fault(self, kind: str, count: int = 1) -> None:
        """Make the next `count` authenticated send requests fail as `kind`."""
        self._faults.add(kind, count)

    def clear_faults(self) -> None:
        """Drop the faults not yet taken: the next requests succeed again."""
        self._faults.clear()

    @property
    def pending_faults(self) -> list[str]:
        return self._faults.pending

    def reset(self) -> None:
        """Forget messages, faults and counters; reorder/duplicate off; unsent reports dropped."""
        self._faults.clear()
        self.create_requests = 0
        self.reorder = False
        self.duplicate = False
        self.hang_every = 0
        self.lookups_to_hang = 0
        self.forget_messages()

    def _hangs(self, fault: str | None) -> bool:
        """Whether the answer to the send just counted is to be held."""
        return fault == "hang" or bool(
            self.hang_every and self.create_requests % self.hang_every == 0
        )

    async def _hang_lookup(self, request: Request) -> None:
        """Hold a look-up's answer when one is due to hang (`lookups_to_hang`)."""
        if self.lookups_to_hang > 0:
            self.lookups_to_hang -= 1
            await self._hang(request)

    async def _hang(self, request: Request) -> None:
        generation = self._generation
        await hold(request, self.hang_seconds, lambda: generation == self._generation)

    # -- control endpoints ---------------------------------------------------------------------

    def control_routes(self) -> list[Route]:
        return [
            Route("/_sandbox/messages", self._list_messages, methods=["GET"]),
            Route("/_sandbox/faults", self._faults_endpoint, methods=["GET", "POST"]),
            Route("/_sandbox/settings", self._settings_endpoint, methods=["GET", "POST"]),
            Route("/_sandbox/reset", self._reset_endpoint, methods=["POST"]),
        ]

    async def _list_messages(self, request: Request) -> Response:
        return JSONResponse({"messages": self.messages, "create_requests": self.create_requests})

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            fault = requested_fault(await json_object(request), self._faults.kinds)
            if isinstance(fault, str):
                return bad_request(fault)
            self.add_fault(*fault)
        return JSONResponse({"faults": self.pending_faults})

    async def _settings_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            problem = apply_settings(self, SETTINGS, await json_object(request))
            if problem:
                return bad_request(problem)
        return JSONResponse({name: getattr(self, name) for name in SETTINGS})

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})
