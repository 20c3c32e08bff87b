"""Where a tenant-supplied host may lead: public addresses on mail ports, nothing internal.

A tenant brings its own SMTP server, so the gateway opens connections from inside the
operator's network to a host and port the tenant chose. Left unchecked that reaches the
operator's own services (loopback, private ranges, a cloud metadata endpoint at
169.254.169.254), and the channel test's answers turn it into a port scanner. The rule:

- the host is not `localhost` or a `*.localhost` name (RFC 6761), and it is, or resolves only
  to, globally routable unicast addresses: loopback, private, link-local, site-local, shared
  (CGNAT 100.64.0.0/10), multicast, reserved and unspecified addresses are refused, and so
  is an IPv6 address embedding one of those (IPv4-mapped, 6to4, NAT64, IPv4-compatible);
- the port is one of `SMTP_ALLOWED_PORTS` (25, 465, 587 and 2525 by default).

The rule is checked when the settings are saved and again at every connection, and the
connection goes to the very address that was checked, so a DNS answer that changes in between
(rebinding) cannot slip through. A name that does not resolve at save time is accepted: the
tenant may set its DNS up later, and the connection-time check still applies.
`SMTP_ALLOW_PRIVATE_HOSTS=true` lifts the address and port rules, for local development and
tests against a server on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


class _SmtpSettings(Protocol):
    """The two settings the guard reads (`gateway.settings_model.GatewaySettings` has them,
    validated at start-up; this module sits below it, since it parses the ports)."""

    @property
    def smtp_allow_private_hosts(self) -> bool: ...

    @property
    def smtp_ports(self) -> frozenset[int] | None: ...


class _Settings(Protocol):
    """`gateway.config.Settings`: the typed settings are `typed`."""

    @property
    def typed(self) -> _SmtpSettings: ...


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_SMTP_PORTS = frozenset({25, 465, 587, 2525})
# How long saving the settings may wait for DNS before accepting the name unchecked.
SAVE_RESOLVE_SECONDS = 2.0

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_PUBLIC_ONLY = "; the gateway only connects to public SMTP servers"
_LOOPBACK_NAMES = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
# The numeric forms inet_aton (and so getaddrinfo) reads as IPv4: "127.1", "0x7f.0.0.1",
# "2130706433". They are addresses, not names, and are checked as such.
_NUMERIC_IPV4 = re.compile(r"(0x[0-9a-f]*|\d+)(\.(0x[0-9a-f]*|\d+)){0,3}", re.IGNORECASE)


class Resolver(Protocol):
    """The addresses a host name resolves to; empty, or OSError, when it does not resolve."""

    async def __call__(self, host: str) -> Sequence[str]: ...


async def system_resolver(host: str) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class HostRefused(Exception):
    """The host or port is not one the gateway connects to; `field` names the setting."""

    def __init__(self, field: Literal["host", "port"], reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


class HostUnresolved(Exception):
    """The host name does not resolve (no such name, no DNS answer in time)."""


def parse_ports(raw: str) -> frozenset[int] | None:
    """`SMTP_ALLOWED_PORTS`: comma-separated port numbers, or `*` for any port."""
    if raw.strip() == "*":
        return None
    try:
        ports = frozenset(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"must be comma-separated port numbers or *, got {raw!r}") from None
    if not ports or any(not 1 <= port <= 65535 for port in ports):
        raise ValueError(f"must list ports between 1 and 65535 (or be *), got {raw!r}")
    return ports


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _NAT64) or (
        address in _IPV4_COMPATIBLE and int(address) > 1
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress) -> str | None:
    """What kind of internal address this is (None when the gateway may connect to it)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            # these forms reach (or are translated to) the IPv4 address they carry
            return address_refusal(embedded)
    checks: list[tuple[bool, str]] = [
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local, "site-local"),
        (address in _SHARED, "shared (carrier-grade NAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-public"),
    ]
    return next((kind for matched, kind in checks if matched), None)


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells out, in any form the resolver would read as one."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_localhost_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


@dataclass(frozen=True)
class HostGuard:
    """The rule above, with the resolver it uses (tests give a fake one: no real DNS)."""

    allow_private: bool = False
    ports: frozenset[int] | None = DEFAULT_SMTP_PORTS
    resolver: Resolver = field(default=system_resolver)
    save_timeout: float = SAVE_RESOLVE_SECONDS

    @classmethod
    def from_settings(cls, settings: _Settings, resolver: Resolver | None = None) -> HostGuard:
        return cls(
            allow_private=settings.typed.smtp_allow_private_hosts,
            ports=settings.typed.smtp_ports,
            resolver=resolver or system_resolver,
        )

    def check_port(self, port: int) -> None:
        if self.allow_private or self.ports is None or port in self.ports:
            return
        allowed = ", ".join(str(p) for p in sorted(self.ports))
        raise HostRefused("port", f"must be one of the SMTP ports {allowed}")

    async def addresses(self, host: str, within: float) -> list[IPAddress]:
        """Every address `host` resolves to, each one checked, in the resolver's order.

        Raises HostRefused when the name or any of its addresses is internal (one bad address
        refuses the host: a mixed answer is how rebinding is attempted), HostUnresolved when
        the name does not resolve `within` seconds."""
        literal = ip_literal(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        elif is_localhost_name(host):
            if not self.allow_private:
                raise HostRefused("host", f"{host} names the gateway's own machine{_PUBLIC_ONLY}")
            addresses = list(_LOOPBACK_NAMES)
        else:
            addresses = await self._resolve(host, within)
        if self.allow_private:
            return addresses
        for address in addresses:
            kind = address_refusal(address)
            if kind is None:
                continue
            if literal is not None:
                raise HostRefused("host", f"{host} is a {kind} address{_PUBLIC_ONLY}")
            raise HostRefused("host", f"{host} resolves to a {kind} address{_PUBLIC_ONLY}")
        return addresses

    async def check_saved(self, host: str, port: int) -> None:
        """The save-time check: a refusal raises HostRefused; a name that does not resolve
        (yet) passes, since every connection checks again."""
        self.check_port(port)
        try:
            await self.addresses(host, self.save_timeout)
        except HostUnresolved:
            return

    async def _resolve(self, host: str, within: float) -> list[IPAddress]:
        try:
            answer = await asyncio.wait_for(self.resolver(host), within)
        except (OSError, UnicodeError) as exc:  # TimeoutError is an OSError
            raise HostUnresolved(f"{host} does not resolve") from exc
        addresses: list[IPAddress] = []
        for raw in answer:
            try:
                addresses.append(ipaddress.ip_address(raw))
            except ValueError:
                continue
        if not addresses:
            raise HostUnresolved(f"{host} does not resolve")
        return list(dict.fromkeys(addresses))
