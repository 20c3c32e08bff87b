"""The providers the gateway knows, each registered once with what it declares it can do.

A registration names the provider (as the message log records it), the channel it sends on,
its capabilities (`send`, `lookup`, `webhooks`: the protocols of gateway/providers/base.py)
and a factory that builds it from the settings, or answers None while the operator has not
configured it. Capabilities are checked against the class when it is registered, so a
provider that forgot a method fails at start-up, not on the first message that needs it.
Each provider is built on first use and shared (connection pooling); several names may share
one instance (Meta's Cloud API and 360dialog speak the same wire).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from gateway.providers.base import Lookup, Sender, Telephony, VoiceAgent, WebhookSource

Capability = str
_MEMBERS: dict[Capability, tuple[str, ...]] = {
    "send": ("name", "channel", "send", "aclose"),
    "lookup": ("fetch", "find_sent", "report"),
    "webhooks": ("name", "kinds", "verify", "parse"),
    "telephony": ("name", "media_type", "render"),
    "voice_agent": (
        "create_bypass_call",
        "bridged_call",
        "create_sip_number",
        "update_sip_number",
        "create_assistant",
        "update_assistant",
    ),
}


class RegistrationError(TypeError):
    """A provider that does not have what it declares."""


@dataclass(frozen=True)
class Registration:
    names: tuple[str, ...]
    cls: type[Any]
    capabilities: frozenset[Capability]
    make: Callable[[], Any | None]
    channel: str | None = None
    # the webhook kind its delivery reports come to (/webhooks/{name}/{kind}?mid=…)
    status_callback: str | None = None
    # the number (or sender id) it sends from when the message names none of its own
    sender: str | None = None


class Providers:
    def __init__(self) -> None:
        self._by_name: dict[tuple[str, Capability], Registration] = {}
        self._made: dict[type[Any], Any | None] = {}

    def register(
        self,
        names: str | tuple[str, ...],
        cls: type[Any],
        capabilities: set[Capability] | frozenset[Capability],
        make: Callable[[], Any | None],
        channel: str | None = None,
        status_callback: str | None = None,
        sender: str | None = None,
    ) -> None:
        names = (names,) if isinstance(names, str) else names
        for capability in capabilities:
            missing = [m for m in _MEMBERS[capability] if not hasattr(cls, m)]
            if missing:
                raise RegistrationError(
                    f"provider {names[0]} declares {capability!r} but has no " + ", ".join(missing)
                )
        registration = Registration(
            names, cls, frozenset(capabilities), make, channel, status_callback, sender
        )
        for name in names:
            for capability in capabilities:
                if (name, capability) in self._by_name:
                    raise RegistrationError(f"provider {name} registers {capability!r} twice")
                self._by_name[(name, capability)] = registration

    def declares(self, name: str | None, capability: Capability) -> bool:
        """Whether `name` is registered with `capability` (without building it)."""
        return (name or "", capability) in self._by_name

    def status_callback(self, name: str | None) -> str | None:
        registration = self._by_name.get((name or "", "send"))
        return registration.status_callback if registration else None

    def default_sender(self, name: str | None) -> str | None:
        registration = self._by_name.get((name or "", "send"))
        return registration.sender if registration else None

    def names(self, channel: str) -> list[str]:
        """The providers that send on `channel`."""
        return [n for (n, c), r in self._by_name.items() if c == "send" and r.channel == channel]

    def _get(self, name: str | None, capability: Capability) -> Any | None:
        """The provider built for `name`, or None. What it is was checked once: its class's
        members when it was registered, the class of what `make` built when it was built; so
        the accessors below need no `isinstance` against a protocol (tens of µs each, on
        every send)."""
        registration = self._by_name.get((name or "", capability))
        if registration is None:
            return None
        if registration.cls not in self._made:
            made = registration.make()
            if made is not None and not isinstance(made, registration.cls):
                raise RegistrationError(
                    f"provider {registration.names[0]} built a {type(made).__name__}, "
                    f"not the {registration.cls.__name__} it registered"
                )
            self._made[registration.cls] = made
        return self._made[registration.cls]

    def sender(self, name: str | None) -> Sender | None:
        return cast(Sender | None, self._get(name, "send"))

    def lookup(self, name: str | None) -> Lookup | None:
        return cast(Lookup | None, self._get(name, "lookup"))

    def webhooks(self, name: str | None) -> WebhookSource | None:
        return cast(WebhookSource | None, self._get(name, "webhooks"))

    def telephony(self, name: str | None) -> Telephony | None:
        return cast(Telephony | None, self._get(name, "telephony"))

    def voice_agent(self, name: str | None) -> VoiceAgent | None:
        return cast(VoiceAgent | None, self._get(name, "voice_agent"))

    async def aclose(self) -> None:
        for made in self._made.values():
            if isinstance(made, Sender | VoiceAgent):
                await made.aclose()
        self._made.clear()
