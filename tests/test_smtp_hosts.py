"""The tenant's SMTP host may not lead into the operator's network (gateway.net_guard): refused
when the settings are saved and again at every connection, rebinding included.

Real connections go to loopback only; every name is answered by a FakeResolver, never DNS."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from gateway.channel_models import EmailConfig
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from gateway.net_guard import HostGuard, HostRefused, HostUnresolved, parse_ports
from gateway.providers.base import OutboundMessage, ProviderError
from gateway.providers.smtp.sender import SmtpSender
from gateway.sandbox.smtp_server import SmtpSandbox
from tests.conftest import ROOT, Api, FakeResolver, start_api, use_resolver

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
EMAIL = {
    "port": 587,
    "security": "starttls",
    "username": "agent@example.com",
    "password": "app-password-1234abcd",
    "from_email": "agent@example.com",
}

INTERNAL_LITERALS = [
    "127.0.0.1",
    "127.1",  # inet_aton's short form of 127.0.0.1
    "2130706433",  # 127.0.0.1 as one number
    "0x7f.0.0.1",
    "10.0.0.8",
    "172.16.5.4",
    "192.168.1.20",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "0.0.0.0",
    "224.0.0.251",
    "240.0.0.1",
    "255.255.255.255",
]
INTERNAL_ANSWERS = [
    "127.0.0.1",
    "10.1.2.3",
    "::1",
    "::",
    "fe80::1",
    "fec0::1",  # site-local
    "fd00::25",  # unique local
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "100.100.100.100",  # CGNAT
]


def guard(answers: dict[str, Sequence[str]] | None = None, **options: Any) -> HostGuard:
    return HostGuard(resolver=FakeResolver(answers), **options)


# -- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize("host", INTERNAL_LITERALS)
async def test_internal_ip_literals_are_refused(host: str) -> None:
    with pytest.raises(HostRefused) as refused:
        await guard().addresses(host, 1)
    assert refused.value.field == "host"


@pytest.mark.parametrize("address", INTERNAL_ANSWERS)
async def test_names_resolving_to_internal_addresses_are_refused(address: str) -> None:
    with pytest.raises(HostRefused) as refused:
        await guard({"mail.tenant.test": [address]}).addresses("mail.tenant.test", 1)
    assert "resolves to" in refused.value.reason
    assert address not in refused.value.reason, "the internal address is not revealed"


async def test_one_internal_address_among_public_ones_refuses_the_host() -> None:
    mixed = guard({"mail.tenant.test": [PUBLIC_V4, "10.0.0.5"]})
    with pytest.raises(HostRefused):
        await mixed.addresses("mail.tenant.test", 1)


@pytest.mark.parametrize("host", ["localhost", "mail.localhost", "LOCALHOST"])
async def test_localhost_names_are_refused_without_asking_dns(host: str) -> None:
    resolver = FakeResolver({host: [PUBLIC_V4]})
    with pytest.raises(HostRefused):
        await HostGuard(resolver=resolver).addresses(host, 1)
    assert resolver.asked == []


@pytest.mark.parametrize(
    "answer",
    [
        [PUBLIC_V4],
        [PUBLIC_V6, PUBLIC_V4],
        ["::ffff:93.184.215.14"],
        ["64:ff9b::5db8:d70e"],  # NAT64 of a public address
    ],
)
async def test_public_addresses_are_allowed(answer: list[str]) -> None:
    found = await guard({"smtp.tenant.test": answer}).addresses("smtp.tenant.test", 1)
    assert found == [ipaddress.ip_address(a) for a in answer]


async def test_a_public_ip_literal_is_allowed_without_asking_dns() -> None:
    resolver = FakeResolver()
    found = await HostGuard(resolver=resolver).addresses(PUBLIC_V4, 1)
    assert [str(a) for a in found] == [PUBLIC_V4] and resolver.asked == []


async def test_allow_private_lets_internal_hosts_and_any_port_through() -> None:
    lenient = guard({"relay.internal": ["10.0.0.9"]}, allow_private=True)
    assert [str(a) for a in await lenient.addresses("relay.internal", 1)] == ["10.0.0.9"]
    assert [str(a) for a in await lenient.addresses("localhost", 1)] == ["127.0.0.1", "::1"]
    lenient.check_port(22)


@pytest.mark.parametrize("port", [22, 80, 3306, 6379, 2526])
def test_only_smtp_ports_are_allowed(port: int) -> None:
    with pytest.raises(HostRefused) as refused:
        guard().check_port(port)
    assert refused.value.field == "port"
    for allowed in (25, 465, 587, 2525):
        guard().check_port(allowed)


async def test_a_name_that_does_not_resolve_passes_the_save_check_only() -> None:
    strict = guard()
    await strict.check_saved("not-yet.tenant.test", 587)
    with pytest.raises(HostUnresolved):
        await strict.addresses("not-yet.tenant.test", 1)


async def test_a_resolver_that_never_answers_does_not_hold_the_save_up() -> None:
    async def silent(host: str) -> Sequence[str]:
        await asyncio.Event().wait()
        return []

    await HostGuard(resolver=silent, save_timeout=0.05).check_saved("slow.tenant.test", 587)


def test_ports_setting() -> None:
    assert parse_ports("587, 2525") == frozenset({587, 2525})
    assert parse_ports("*") is None
    for bad in ("", "smtp", "0", "70000"):
        with pytest.raises(ValueError):
            parse_ports(bad)


@pytest.mark.parametrize(
    ("name", "value"),
    [("SMTP_ALLOW_PRIVATE_HOSTS", "sometimes"), ("SMTP_ALLOWED_PORTS", "587,smtp")],
)
def test_malformed_settings_stop_start_up(environ: dict[str, str], name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(ROOT / "wrangler_like.toml", environ={**environ, name: value})


def test_private_hosts_are_refused_unless_the_operator_allows_them(
    make_settings: Callable[..., Settings],
) -> None:
    assert HostGuard.from_settings(make_settings()).allow_private is False
    lenient = HostGuard.from_settings(make_settings(SMTP_ALLOW_PRIVATE_HOSTS="true"))
    assert lenient.allow_private is True


# -- at save time: POST / PUT /api/channels/email/config -------------------------------------


async def _email_view(api: Api, key: dict[str, str]) -> dict[str, Any]:
    response = await api.client.get("/api/channels/email/config", headers=key)
    settings: dict[str, Any] = response.json()["settings"]
    return settings


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "10.0.0.8", "169.254.169.254"])
async def test_saving_an_internal_host_is_422_and_stores_nothing(api: Api, host: str) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.post(
        "/api/channels/email/config", json={**EMAIL, "host": host}, headers=key
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert [f["field"] for f in error["details"]["fields"]] == ["host"]
    assert (await _email_view(api, key))["host"] is None


async def test_saving_a_name_that_resolves_inside_is_422(api: Api) -> None:
    use_resolver(api.gateway, FakeResolver({"smtp.acme.test": ["192.168.10.25"]}))
    _, key = await api.create_tenant("acme")
    response = await api.client.post(
        "/api/channels/email/config", json={**EMAIL, "host": "smtp.acme.test"}, headers=key
    )
    assert response.status_code == 422
    [field] = response.json()["error"]["details"]["fields"]
    assert field["field"] == "host" and "192.168" not in field["message"]


async def test_patching_the_host_inside_keeps_the_stored_one(api: Api) -> None:
    use_resolver(api.gateway, FakeResolver({"smtp.acme.test": [PUBLIC_V4]}))
    _, key = await api.create_tenant("acme")
    saved = await api.client.post(
        "/api/channels/email/config", json={**EMAIL, "host": "smtp.acme.test"}, headers=key
    )
    assert saved.status_code == 200
    patched = await api.client.put(
        "/api/channels/email/config", json={"host": "172.17.0.1"}, headers=key
    )
    assert patched.status_code == 422
    assert (await _email_view(api, key))["host"] == "smtp.acme.test"


async def test_saving_a_non_smtp_port_is_422(api: Api) -> None:
    _, key = await api.create_tenant("acme")
    response = await api.client.post(
        "/api/channels/email/config", json={**EMAIL, "host": PUBLIC_V4, "port": 6379}, headers=key
    )
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["details"]["fields"]] == ["port"]
    assert (await _email_view(api, key))["host"] is None


@pytest.mark.parametrize(
    ("host", "answers"),
    [("smtp.acme.test", {"smtp.acme.test": [PUBLIC_V4]}), ("later.acme.test", {})],
)
async def test_public_and_not_yet_resolving_hosts_are_saved(
    api: Api, host: str, answers: dict[str, Sequence[str]]
) -> None:
    use_resolver(api.gateway, FakeResolver(answers))
    _, key = await api.create_tenant("acme")
    response = await api.client.post(
        "/api/channels/email/config", json={**EMAIL, "host": host, "port": 2525}, headers=key
    )
    assert response.status_code == 200, response.text
    assert (await _email_view(api, key))["host"] == host


@pytest.fixture
async def lenient_api(make_settings: Callable[..., Settings]) -> AsyncIterator[Api]:
    app, client = await start_api(make_settings(SMTP_ALLOW_PRIVATE_HOSTS="true"))
    try:
        yield Api(app, client)
    finally:
        await client.aclose()
        await app.state.gateway.stop()


async def test_the_operator_setting_allows_internal_hosts(lenient_api: Api) -> None:
    _, key = await lenient_api.create_tenant("acme")
    response = await lenient_api.client.post(
        "/api/channels/email/config",
        json={**EMAIL, "host": "localhost", "port": 1025},
        headers=key,
    )
    assert response.status_code == 200, response.text


# -- at connect time -------------------------------------------------------------------------


class Listener:
    """A TCP listener on loopback that counts the connections it is offered."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class Rebinding(FakeResolver):
    """Answers a public address the first time, then loopback: a DNS rebinding attack."""

    async def __call__(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        return [PUBLIC_V4] if len(self.asked) == 1 else ["127.0.0.1"]


def _message(config: EmailConfig) -> OutboundMessage:
    return OutboundMessage(
        id="msg_1", tenant_id="t_1", to="client@example.org", body="hi", config=config
    )


async def test_a_rebinding_name_is_refused_at_connect_and_nothing_is_reached(
    make_settings: Callable[..., Settings],
) -> None:
    async with Listener() as listener:
        # the listener's port is allowed, so only the address rule can stop the connection
        settings = make_settings(SMTP_ALLOWED_PORTS=str(listener.port))
        app, client = await start_api(settings)
        api = Api(app, client)
        try:
            resolver = Rebinding()
            use_resolver(api.gateway, resolver)
            _, key = await api.create_tenant("acme")
            saved = await api.client.post(
                "/api/channels/email/config",
                json={**EMAIL, "host": "mail.rebind.test", "port": listener.port},
                headers=key,
            )
            assert saved.status_code == 200, saved.text
            response = await api.client.post(
                "/api/channels/test",
                json={"channel": "email", "to": "client@example.org"},
                headers=key,
            )
        finally:
            await client.aclose()
            await app.state.gateway.stop()
    assert response.status_code == 200
    result = response.json()
    assert result["ok"] is False and result["outcome"] == "configuration"
    assert result["code"] == "host_refused"
    assert "127.0.0.1" not in result["detail"]
    assert resolver.asked == ["mail.rebind.test", "mail.rebind.test"]
    assert listener.connections == 0


async def test_the_adapter_refuses_a_non_smtp_port_before_connecting() -> None:
    async with Listener() as listener:
        config = EmailConfig(host=PUBLIC_V4, port=listener.port, from_email="a@example.org")
        adapter = SmtpSender(timeout=2, hosts=HostGuard(resolver=FakeResolver()))
        with pytest.raises(ProviderError) as refused:
            await adapter.send(_message(config))
    assert refused.value.kind == "configuration" and "port" in refused.value.reason
    assert listener.connections == 0


@pytest.fixture
def plain_smtp() -> Iterator[SmtpSandbox]:
    with SmtpSandbox(tls_mode="none", username=None, password=None) as server:
        yield server


async def test_the_connection_goes_to_the_address_that_was_checked(
    plain_smtp: SmtpSandbox,
) -> None:
    # 127.0.0.2 is loopback too but nobody listens there: the next checked address is tried
    resolver = FakeResolver({"mail.acme.test": ["127.0.0.2", "127.0.0.1"]})
    config = EmailConfig(
        host="mail.acme.test", port=plain_smtp.port, security="none", from_email="a@example.org"
    )
    adapter = SmtpSender(timeout=5, hosts=HostGuard(allow_private=True, resolver=resolver))
    result = await adapter.send(_message(config))
    assert result.status == "sent"
    assert resolver.asked == ["mail.acme.test"]
    [received] = plain_smtp.messages
    assert received.rcpt_tos == ("client@example.org",)


async def test_tls_verifies_the_certificate_against_the_host_name() -> None:
    # The sandbox's certificate names localhost and 127.0.0.1. Reached at 127.0.0.1 under
    # another name, it must not be accepted; under "localhost" it is.
    with SmtpSandbox(tls_mode="tls", username=None, password=None) as server:
        resolver = FakeResolver({"mail.acme.test": ["127.0.0.1"]})
        adapter = SmtpSender(
            ca_file=str(server.cert_path),
            timeout=5,
            hosts=HostGuard(allow_private=True, resolver=resolver),
        )

        def config(host: str) -> EmailConfig:
            return EmailConfig(
                host=host, port=server.port, security="tls", from_email="a@example.org"
            )

        with pytest.raises(ProviderError) as refused:
            await adapter.send(_message(config("mail.acme.test")))
        assert refused.value.kind == "configuration"
        assert server.messages == []
        assert (await adapter.send(_message(config("localhost")))).status == "sent"
        assert len(server.messages) == 1
