"""The provider registry: a provider that lacks what it declares is refused when it is
registered, one that builds something else when it is built; never on a message."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.providers.registry import Providers, RegistrationError


class _Sms:
    name = "fake"
    channel = "sms"

    async def send(self, message: Any) -> Any: ...

    async def aclose(self) -> None: ...


class _NoSend:
    name = "broken"
    channel = "sms"

    async def aclose(self) -> None: ...


def test_a_provider_without_a_declared_member_is_refused_at_registration() -> None:
    providers = Providers()
    with pytest.raises(RegistrationError, match="declares 'send' but has no send"):
        providers.register("broken", _NoSend, {"send"}, _NoSend, channel="sms")


def test_a_provider_built_as_another_class_is_refused_when_built() -> None:
    providers = Providers()
    providers.register("fake", _Sms, {"send"}, _NoSend, channel="sms")
    with pytest.raises(RegistrationError, match="built a _NoSend, not the _Sms"):
        providers.sender("fake")


def test_a_registered_provider_is_built_once_and_an_unconfigured_one_is_none() -> None:
    providers = Providers()
    built: list[_Sms] = []

    def make() -> _Sms:
        built.append(_Sms())
        return built[-1]

    providers.register("fake", _Sms, {"send"}, make, channel="sms")
    providers.register("off", _NoSend, set(), lambda: None, channel="sms")
    assert providers.sender("fake") is providers.sender("fake") is built[0]
    assert len(built) == 1
    assert providers.sender("off") is None and providers.sender("nobody") is None
